"""Resolve a PROGRAM argument: a program file, a zoo name (`lion`), or `runs/NAME#ID`.

Every command that takes a PROGRAM goes through `resolve_program` (`resolve_candidate` where a
role candidate, one program per parameter role, is accepted too), so they all accept the same
three forms and fail with the same one-line errors. Programs are parsed, never run.
"""
from __future__ import annotations

import difflib
from dataclasses import replace
from pathlib import Path

from optsearch.discovered import load_zoo_candidate, zoo_names, zoo_path, zoo_role_names
from optsearch.dsl import (OptsearchError, Program, ProgramError, RoleProgram, load_candidate, load_program,
                           parse_program)
from optsearch.dsl.roles import role_description


def resolve_program(spec: str) -> Program:
    """The checked program that `spec` names; an `OptsearchError` saying why when none is found,
    or when `spec` is a role candidate (one program per parameter role)."""
    candidate = resolve_candidate(spec, run_roles=False)
    if isinstance(candidate, RoleProgram):
        where = program_source(spec)
        raise ProgramError(f"a role candidate ({role_description(candidate)}); only `optsearch eval` and `export` "
                           "take one so far: give a single program", where, candidate.roles_line)
    return candidate


def resolve_candidate(spec: str, run_roles: bool = True) -> Program | RoleProgram:
    """The checked program or role candidate that `spec` names (a file, a zoo name, runs/NAME#ID).

    A program of a run that searched with parameter roles is, with `run_roles`, the candidate it
    makes with the run's fixed programs (what the run evaluated); without, the evolved program."""
    path = Path(spec)
    if path.is_file():
        return load_candidate(path)  # parsing also checks: errors name the file and line
    if spec in zoo_names() or spec in zoo_role_names():
        return load_zoo_candidate(spec)
    if "#" in spec:
        run_dir, _, program_id = spec.rpartition("#")
        program = load_run_program(Path(run_dir), program_id)
        if not run_roles:
            return program
        from optsearch.run import run_candidate, stored_config  # the run layer reads this module
        return run_candidate(stored_config(Path(run_dir)), program)
    if path.exists():  # a directory, a device: load_program says why it cannot be read
        return load_program(path)
    raise OptsearchError(_not_found_message(spec))


def program_source(spec: str) -> str:
    """Where `spec`'s program text lives, for display: a file path or `runs/NAME#ID`."""
    if Path(spec).is_file():
        return spec
    if spec in zoo_names() or spec in zoo_role_names():
        return str(zoo_path(spec))
    return spec


def load_run_program(run_dir: Path, program_id: str) -> Program:
    """The program stored as `program_id` in the run store at `run_dir/run.db`, named `NAME_ID`."""
    if not run_dir.name or not program_id:
        raise OptsearchError(f"expected runs/NAME#ID, got '{run_dir}#{program_id}'")
    if not program_id.isdigit():
        raise OptsearchError(f"{run_dir}#{program_id}: a program id is a number, as `optsearch show {run_dir}` lists")
    from optsearch.search.store import RunStore  # the store belongs to the search layer
    with RunStore.open(run_dir, readonly=True) as store:
        row = store.program(int(program_id))
    program = parse_program(row.text, path=f"{run_dir}#{program_id}")
    name = f"{run_dir.name}_{program_id}"
    return replace(program, name=name if name.isidentifier() else f"program_{program_id}")


def _not_found_message(spec: str) -> str:
    names = zoo_names() + zoo_role_names()
    close = difflib.get_close_matches(spec, names, n=2)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return f"no program file or zoo program named '{spec}'{hint}; zoo: {', '.join(names)}"


__all__ = ["load_run_program", "program_source", "resolve_candidate", "resolve_program"]
