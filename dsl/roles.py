"""Parameter roles, and candidates that are one program per role (`RoleProgram`).

A model's parameters play different parts: Muon, for one, steps the 2-D weights inside the
transformer blocks and leaves embeddings, the output head and vectors to AdamW. The roles:

- `hidden`: 2-D (and higher) weights inside the model's blocks;
- `embedding`: the input layer (token and patch embeddings, positions, an MLP's first layer);
- `head`: the output layer's weight;
- `vector`: anything with fewer than 2 dims (biases, norm gains).

A proxy task says which role each parameter has; without one, `default_role` reads it off the
shape. A role candidate's text is several functions and a module-level dict naming a function
per role (`"default"` for every role not listed); like a program, it is parsed, never executed:

    def lion(w, g, lr, m):
        ...
    def adamw(w, g, lr, step, m, v):
        ...
    roles = {"hidden": lion, "default": adamw}

A file with one function and no `roles` is a plain program, "this program for every role".
"""
from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Mapping, Sequence


from optsearch.dsl.errors import ProgramError
from optsearch.dsl.ir import Program, RoleProgram
from optsearch.dsl.parse import describe, module_statements, parse_function, parse_program
from optsearch.dsl.printer import print_program

Role = Literal["hidden", "embedding", "head", "vector"]
ROLES: tuple[Role, ...] = ("hidden", "embedding", "head", "vector")
DEFAULT = "default"
"""The key of a role candidate's `roles` dict that covers every role not listed."""
ROLES_NAME = "roles"
"""The module-level variable that holds a role candidate's dict."""


def default_role(shape: Sequence[int]) -> Role:
    """The role a parameter of `shape` has when nothing else is known: `hidden` for 2 dims and
    more, `vector` below."""
    return "hidden" if len(shape) >= 2 else "vector"


def program_for(candidate: Program | RoleProgram, role: str) -> Program:
    """The program that steps parameters of `role`."""
    if isinstance(candidate, Program):
        return candidate
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    table = dict(candidate.roles)
    name = table.get(role, table.get(DEFAULT))
    return next(p for p in candidate.programs if p.name == name)


@dataclass(frozen=True)
class ParamGroup:
    """The parameters (indices into the model's parameter list) one program steps."""

    program: Program
    indices: tuple[int, ...]


def parameter_groups(candidate: Program | RoleProgram, roles: Sequence[str]) -> tuple[ParamGroup, ...]:
    """Split parameters whose roles are `roles` (in model order) by the program that steps them.

    One group per distinct program, in the candidate's program order, so a plain program, or a
    candidate whose roles all name one function, is one group of every parameter in order.
    Programs that step no parameter of this model have no group.
    """
    if isinstance(candidate, Program):
        return (ParamGroup(candidate, tuple(range(len(roles)))),)
    names = [program_for(candidate, r).name for r in roles]
    return tuple(ParamGroup(p, tuple(i for i, n in enumerate(names) if n == p.name))
                 for p in candidate.programs if p.name in names)


def with_fixed_roles(program: Program, evolve: Sequence[str], fixed: Mapping[str, Program]) -> RoleProgram:
    """The candidate that steps the roles in `evolve` with `program` and every other role with a fixed
    program (`fixed` keyed by role, or "default" for every role not listed): how a search evolves
    one role's program beside fixed ones. A fixed program whose name is taken by a different one is
    renamed `NAME_ROLE`; `ValueError` for an unknown role or a role left without a program."""
    unknown = [r for r in (*evolve, *fixed) if r not in (*ROLES, DEFAULT) or (r == DEFAULT and r in evolve)]
    if unknown:
        raise ValueError(f"unknown role '{unknown[0]}'; roles: {', '.join(ROLES)} "
                         f"(and \"{DEFAULT}\" for fixed ones)")
    both = [r for r in evolve if r in fixed]
    if both:
        raise ValueError(f"role '{both[0]}' is both evolved and fixed")
    programs, table = [program], {r: program.name for r in evolve}
    for key, p in fixed.items():
        if p not in programs:
            taken = {q.name for q in programs}
            if p.name in taken:
                p = replace(p, name=f"{p.name}_{key}")
            programs.append(p)
        table[key] = p.name
    missing = [r for r in ROLES if r not in table]
    if missing and DEFAULT not in table:
        raise ValueError(f"no program for the role{'s' * (len(missing) > 1)} {', '.join(missing)}")
    return RoleProgram(tuple(p for p in programs if p.name in table.values()),
                       tuple((k, table[k]) for k in (*ROLES, DEFAULT) if k in table))


def parse_candidate(text: str | bytes, path: str | None = None, *,
                    validate: bool = True) -> Program | RoleProgram:
    """A plain program (one function) or a role candidate (several, and `roles = {...}`).

    Raises `ProgramError(path, line, cause)` for anything not accepted: unknown roles, a role
    naming no function of the file, a function no role uses, a role left without a program.
    """
    stmts = module_statements(text, path)
    if not any(_is_roles(s) for s in stmts):
        funcs = [s for s in stmts if isinstance(s, ast.FunctionDef)]
        if len(funcs) > 1 and all(isinstance(s, ast.FunctionDef) for s in stmts):
            raise ProgramError("a program file holds exactly one function, or several and a module-level "
                               "`roles = {\"hidden\": f, \"default\": h}` naming one per role",
                               path, funcs[1].lineno)
        return parse_program(text, path, validate=validate)
    programs: list[Program] = []
    roles_node: ast.Assign | None = None
    for s in stmts:
        if isinstance(s, ast.FunctionDef):
            if s.name == ROLES_NAME:
                raise ProgramError(f"`{ROLES_NAME}` names the role dict; call the function something else",
                                   path, s.lineno)
            if any(p.name == s.name for p in programs):
                raise ProgramError(f"a second function named '{s.name}'", path, s.lineno)
            programs.append(parse_function(s, path, validate=validate))
        elif _is_roles(s):
            if roles_node is not None:
                raise ProgramError(f"`{ROLES_NAME}` is assigned twice", path, s.lineno)
            roles_node = s  # type: ignore[assignment]
        else:
            raise ProgramError(f"a role candidate holds functions and one `{ROLES_NAME} = {{...}}`, "
                               f"found {describe(s)}", path, s.lineno)
    assert roles_node is not None
    roles = _roles(roles_node, [p.name for p in programs], path)
    used = {name for _, name in roles}
    for p, s in zip(programs, (s for s in stmts if isinstance(s, ast.FunctionDef))):
        if p.name not in used:
            raise ProgramError(f"function '{p.name}' steps no role: name it in `{ROLES_NAME}` or remove it",
                               path, s.lineno)
    return RoleProgram(tuple(programs), roles, roles_node.lineno)


def load_candidate(path: str | Path, *, validate: bool = True) -> Program | RoleProgram:
    """Read and parse a program file or a role candidate file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ProgramError(f"cannot read program file: {e.strerror or e}", str(path)) from None
    return parse_candidate(data, str(path), validate=validate)


def print_candidate(candidate: Program | RoleProgram) -> str:
    """Text of a program or a role candidate; `print_candidate(parse_candidate(t))` is a fixed point."""
    if isinstance(candidate, Program):
        return print_program(candidate)
    entries = ", ".join(f'"{role}": {name}' for role, name in candidate.roles)
    return "\n\n".join(print_program(p) for p in candidate.programs) + f"\n\n{ROLES_NAME} = {{{entries}}}\n"


def _is_roles(s: ast.stmt) -> bool:
    return (isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name)
            and s.targets[0].id == ROLES_NAME)


def _roles(node: ast.Assign, functions: list[str], path: str | None) -> tuple[tuple[str, str], ...]:
    """The `(role, function)` pairs of `roles = {...}`, in `ROLES` order with "default" last."""
    d = node.value
    if not isinstance(d, ast.Dict):
        raise ProgramError(f"`{ROLES_NAME}` must be a dict such as {{\"hidden\": f, \"default\": h}}, "
                           f"found {describe(d)}", path, node.lineno)
    keys = (*ROLES, DEFAULT)
    table: dict[str, str] = {}
    for k, v in zip(d.keys, d.values):
        where = (k or v).lineno
        if k is None or not (isinstance(k, ast.Constant) and isinstance(k.value, str)):
            raise ProgramError(f"the keys of `{ROLES_NAME}` are role names in quotes: {', '.join(keys)}", path, where)
        if k.value not in keys:
            close = difflib.get_close_matches(k.value, keys, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ProgramError(f"unknown role '{k.value}'{hint}; roles: {', '.join(keys)}", path, where)
        if k.value in table:
            raise ProgramError(f"role '{k.value}' is listed twice", path, where)
        if not isinstance(v, ast.Name):
            raise ProgramError(f"role '{k.value}' must name a function of this file, found {describe(v)}", path,
                               v.lineno)
        if v.id not in functions:
            close = difflib.get_close_matches(v.id, functions, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ProgramError(f"role '{k.value}' names '{v.id}', which is no function of this file{hint}", path,
                               v.lineno)
        table[k.value] = v.id
    missing = [r for r in ROLES if r not in table]
    if missing and DEFAULT not in table:
        raise ProgramError(f"no program for the role{'s' * (len(missing) > 1)} {', '.join(missing)}: list "
                           f"{'them' if len(missing) > 1 else 'it'} or add a \"{DEFAULT}\" key", path, node.lineno)
    return tuple((k, table[k]) for k in keys if k in table)


def role_description(candidate: RoleProgram) -> str:
    """One line, `hidden: lion, embedding: adamw, head: adamw, vector: adamw`."""
    return ", ".join(f"{r}: {program_for(candidate, r).name}" for r in ROLES)


__all__ = ["DEFAULT", "ParamGroup", "ROLES", "Role", "default_role", "load_candidate", "parameter_groups",
           "parse_candidate", "print_candidate", "program_for", "role_description", "with_fixed_roles"]
