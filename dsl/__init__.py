"""The optimizer language: IR, op registry, parser, printer, analysis, interpreter, exporter."""
from optsearch.dsl.analysis import (Analysis, canonicalize, check, dead_statements, matrix_ops, structural_hash,
                                   variable_types)
from optsearch.dsl.errors import OptsearchError, ProgramError
from optsearch.dsl.interpret import (CompiledProgram, FlatReducer, Layout, ProgramOptimizer, StepFunction, as_step,
                                     compile_program)
from optsearch.dsl.grouped import GroupedStep, compile_candidate
from optsearch.dsl.ir import INPUTS, Const, Operand, Program, RoleProgram, Statement, Var
from optsearch.dsl.ops import OPS, Op, get_op
from optsearch.dsl.parse import load_program, parse_program
from optsearch.dsl.printer import format_statement, print_program
from optsearch.dsl.roles import (ROLES, ParamGroup, Role, default_role, load_candidate, parameter_groups,
                                 parse_candidate, print_candidate, program_for)
from optsearch.dsl.subspace import Subspace, SubspaceProgram, subspace_from_options, subspace_program

__all__ = [
    "Analysis", "CompiledProgram", "Const", "FlatReducer", "INPUTS", "Layout", "OPS", "Op", "Operand",
    "OptsearchError", "Program", "ProgramError", "ProgramOptimizer", "Statement", "StepFunction", "Var", "as_step",
    "canonicalize",
    "check", "compile_program", "dead_statements", "format_statement", "get_op", "load_program", "matrix_ops",
    "parse_program", "print_program", "structural_hash", "variable_types",
    "Subspace", "SubspaceProgram", "subspace_from_options", "subspace_program",
    "GroupedStep", "ParamGroup", "compile_candidate", "ROLES", "Role", "RoleProgram", "default_role", "load_candidate",
    "parameter_groups", "parse_candidate", "print_candidate", "program_for",
]
