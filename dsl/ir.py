"""The program IR: immutable values that every other part of optsearch reads.

A program is one function `def name(w, g, lr, [step,] *state): ...; return update, *state`.
Each statement applies one registered op to variables and float constants. Behaviour over
programs (parsing, printing, analysis, interpretation, export, mutation) lives in other modules.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

INPUTS: tuple[str, ...] = ("w", "g", "lr", "step")
"""Parameter names with a fixed meaning; every other parameter is a state tensor."""

REQUIRED_INPUTS: tuple[str, ...] = ("w", "g", "lr")


@dataclass(frozen=True)
class Var:
    """A reference to a variable by name."""

    name: str


@dataclass(frozen=True)
class Const:
    """A float literal."""

    value: float


Operand = Union[Var, Const]


@dataclass(frozen=True)
class Statement:
    """`target = op(*args)`; `line` is where it came from (not part of equality)."""

    target: str
    op: str
    args: tuple[Operand, ...]
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Program:
    """An update rule: parameters, straight-line body, returned variables `(update, *state)`."""

    name: str
    params: tuple[str, ...]
    body: tuple[Statement, ...]
    returns: tuple[str, ...]
    return_line: int = field(default=0, compare=False)

    @property
    def state(self) -> tuple[str, ...]:
        """State parameters, in signature order (the order of `returns[1:]`)."""
        return tuple(p for p in self.params if p not in INPUTS)

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(p for p in self.params if p in INPUTS)

    @property
    def constants(self) -> tuple[float, ...]:
        """Every literal, in order of appearance (one entry per occurrence)."""
        return tuple(a.value for s in self.body for a in s.args if isinstance(a, Const))


@dataclass(frozen=True)
class RoleProgram:
    """A candidate that is one program per parameter role (`dsl.roles.ROLES`).

    `programs` are the functions of the file, in file order, with distinct names; `roles` maps a
    role, or "default" for every role not listed, to a program's name, in `ROLES` order with
    "default" last. Every role resolves to a program. A plain `Program` means "this program for
    every role".
    """

    programs: tuple[Program, ...]
    roles: tuple[tuple[str, str], ...]
    roles_line: int = field(default=0, compare=False)

    @property
    def name(self) -> str:
        """The programs' names joined by `_` (`lion_adamw`), in file order."""
        return "_".join(p.name for p in self.programs)
