"""optsearch: discover deep-learning optimizers by evolutionary program search."""
from optsearch.dsl import Program, ProgramError, check, compile_program, load_program, parse_program, print_program

__version__ = "0.1.0"
__all__ = ["Program", "ProgramError", "check", "compile_program", "load_program", "parse_program", "print_program"]
