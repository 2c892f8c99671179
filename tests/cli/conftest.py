"""Run the CLI in-process (`main(argv)`) and capture what it printed."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable

import pytest

from optsearch.cli import build_parser, main

# Options a command needs besides PROGRAM; `{tmp}` is a fresh directory. A new command that
# takes a PROGRAM is picked up by `program_commands` and needs an entry here only if it
# has required options.
REQUIRED_OPTIONS: dict[str, list[str]] = {"export": ["-o", "{tmp}/out/exported.py"]}


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys) -> Callable[..., Result]:
    """`cli("check", "lion")` runs `optsearch check lion` and returns its exit code and output."""

    def run(*argv: object) -> Result:
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse: --version, usage errors
            code = e.code if isinstance(e.code, int) else 1
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def program_commands() -> list[str]:
    """Every command whose parser takes a PROGRAM argument (so new commands are tested too)."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return [name for name, p in sub.choices.items() if any(a.dest == "program" for a in p._actions)]


@pytest.fixture
def argv_for(tmp_path) -> Callable[[str, object], list[str]]:
    """`argv_for("export", path)`: a full command line running a command on a program."""

    def argv(command: str, program: object) -> list[str]:
        extra = [o.format(tmp=tmp_path) for o in REQUIRED_OPTIONS.get(command, [])]
        return [command, str(program), *extra]

    return argv


@pytest.fixture(params=program_commands())
def program_command(request) -> str:
    """Each command that takes a PROGRAM, in turn."""
    return request.param


@pytest.fixture
def all_program_commands() -> list[str]:
    return program_commands()
