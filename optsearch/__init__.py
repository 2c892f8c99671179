"""optsearch: discover deep-learning optimizers by evolutionary program search.

The language (`parse_program`, `check`, `compile_program`, ...) and the Python API: `evolve`,
`resume` and `open_run` for searches, `program`, `optimizer`, `evaluate` and `zoo` for programs.
"""
from optsearch.dsl import Program, ProgramError, check, compile_program, load_program, parse_program, print_program
from optsearch.api import OptimizerProgram, Run, evaluate, evolve, open_run, optimizer, program, resume, zoo

__version__ = "0.1.0"
__all__ = ["OptimizerProgram", "Program", "ProgramError", "Run", "check", "compile_program", "evaluate", "evolve",
           "load_program", "open_run", "optimizer", "parse_program", "print_program", "program", "resume", "zoo"]
