"""Program files of known and discovered optimizers (the zoo), resolvable by name.

A zoo file is a plain program (`zoo_names`, `load_zoo`) or a role candidate, one program per
parameter role (`zoo_role_names`; `load_zoo_candidate` loads either).
"""
from __future__ import annotations

import ast
from functools import cache
from importlib import resources
from pathlib import Path

from optsearch.dsl import Program, RoleProgram, load_candidate, load_program
from optsearch.dsl.roles import ROLES_NAME

ZOO_DIR = Path(str(resources.files(__package__) / "zoo"))


def zoo_names() -> list[str]:
    """Names of the zoo programs (`adamw`, `lion`, ...); role candidates are not among them."""
    return sorted(name for name, roles in _zoo_files() if not roles)


def zoo_role_names() -> list[str]:
    """Names of the zoo's role candidates (`lion_adamw`: Lion on hidden matrices, AdamW elsewhere)."""
    return sorted(name for name, roles in _zoo_files() if roles)


def zoo_path(name: str) -> Path:
    return ZOO_DIR / f"{name}.py"


def load_zoo(name: str) -> Program:
    """The zoo program called `name`; `KeyError` if there is none."""
    if name not in zoo_names():
        raise KeyError(name)
    return load_program(zoo_path(name))


def load_zoo_candidate(name: str) -> Program | RoleProgram:
    """The zoo program or role candidate called `name`; `KeyError` if there is none."""
    if name not in zoo_names() and name not in zoo_role_names():
        raise KeyError(name)
    return load_candidate(zoo_path(name))


def zoo_description(name: str) -> str:
    """First line of the zoo program's docstring (a role candidate's: its file's), read with `ast`
    (never executed); "" where there is none."""
    try:
        tree = ast.parse(zoo_path(name).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return ""
    if ast.get_docstring(tree):  # a role candidate's file says what it is at the top
        return ast.get_docstring(tree).strip().splitlines()[0]
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            doc = ast.get_docstring(node) or ""
            return doc.strip().splitlines()[0] if doc.strip() else ""
    return ""


@cache
def _zoo_files() -> tuple[tuple[str, bool], ...]:
    """(name, whether it is a role candidate) for every zoo file; read once (the zoo ships with
    the package). A file whose top level assigns `roles` is a role candidate."""
    out = []
    for path in sorted(ZOO_DIR.glob("*.py")):
        try:
            body = ast.parse(path.read_text(encoding="utf-8")).body
        except (SyntaxError, UnicodeDecodeError):
            body = []  # a broken file: listed as a program, so loading it names the error
        roles = any(isinstance(s, ast.Assign) and any(isinstance(t, ast.Name) and t.id == ROLES_NAME for t in s.targets)
                    for s in body)
        out.append((path.stem, roles))
    return tuple(out)


__all__ = ["ZOO_DIR", "load_zoo", "load_zoo_candidate", "zoo_description", "zoo_names", "zoo_path",
           "zoo_role_names"]
