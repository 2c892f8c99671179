"""No program text is ever run: loading, checking or exporting a program never executes it.

Each file below would create a marker file and print if Python executed (or imported) it;
every command that takes a PROGRAM must reject it with exit code 2 and leave no marker.
"""
from __future__ import annotations

import argparse
import importlib.util

import pytest

from optsearch.cli import build_parser, main

PAYLOAD = "__import__('pathlib').Path({marker!r}).write_text('ran') or print('EXECUTED')"

# name -> program text with `{payload}` where the code would run.
HOSTILE = {
    "module_top": "{payload}\n\ndef f(w, g, lr):\n    return g\n",
    "module_top_assignment": "x = {payload}\n\ndef f(w, g, lr):\n    return g\n",
    "default_argument": "def f(w, g, lr, m={payload}):\n    return g, m\n",
    "decorator": "@{payload}\ndef f(w, g, lr):\n    return g\n",
    "annotation": "def f(w, g, lr) -> {payload}:\n    return g\n",
    "body_statement": "def f(w, g, lr):\n    {payload}\n    return g\n",
    "body_assignment": "def f(w, g, lr):\n    u = {payload}\n    return u\n",
    "return_value": "def f(w, g, lr):\n    return {payload}\n",
    "nested_function": "def f(w, g, lr):\n    def h():\n        {payload}\n    return g\n",
    "lambda": "def f(w, g, lr):\n    u = (lambda: {payload})()\n    return u\n",
    "class_body": "class C:\n    {payload}\n\ndef f(w, g, lr):\n    return g\n",
    "main_guard": "def f(w, g, lr):\n    return g\n\nif __name__ == '__main__':\n    {payload}\n",
    "exec_call": "def f(w, g, lr):\n    u = exec({payload_text!r})\n    return u\n",
    "eval_call": "def f(w, g, lr):\n    u = eval({payload_text!r})\n    return u\n",
    "role_value": "def f(w, g, lr):\n    return g\n\nroles = {{'hidden': f, 'default': {payload}}}\n",
    "role_key": "def f(w, g, lr):\n    return g\n\nroles = {{{payload}: f, 'default': f}}\n",
    "role_beside_code": "def f(w, g, lr):\n    return g\n\nroles = {{'default': f}}\n{payload}\n",
}

REQUIRED_OPTIONS = {"export": ["-o", "{tmp}/out/exported.py"]}  # as in tests/cli/conftest.py


def program_commands() -> list[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return [name for name, p in sub.choices.items() if any(a.dest == "program" for a in p._actions)]


def run(command: str, program, tmp_path) -> int:
    extra = [o.format(tmp=tmp_path) for o in REQUIRED_OPTIONS.get(command, [])]
    return main([command, str(program), *extra])


@pytest.mark.parametrize("command", program_commands())
@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_program_is_rejected_without_running(tmp_path, capsys, command, name):
    marker = tmp_path / "MARKER"
    payload = PAYLOAD.format(marker=str(marker))
    path = tmp_path / f"{name}.py"
    path.write_text(HOSTILE[name].format(payload=payload, payload_text=payload))
    assert run(command, path, tmp_path) == 2
    out, err = capsys.readouterr()
    assert not marker.exists()
    assert "EXECUTED" not in out + err
    assert err.startswith(f"optsearch: error: {path}:")


def test_code_in_docstrings_and_comments_stays_text_even_in_the_export(tmp_path, capsys):
    """A valid program carrying code in its docstring and comments: accepted, exported, and the
    exported module imported; the code must never run (it is not part of the program)."""
    marker = tmp_path / "MARKER"
    payload = PAYLOAD.format(marker=str(marker))
    path = tmp_path / "sneaky.py"
    path.write_text(
        f'"""{payload}"""\n'
        f"def sneaky(w, g, lr, m):  # {payload}\n"
        f'    """Momentum SGD.\n    \\"\\"\\"\n    {payload}\n    """\n'
        f"    m = interp(m, g, 0.1)  # {payload}\n"
        f"    u = m * lr\n"
        f"    return u, m\n"
    )
    commands = program_commands()
    for command in commands:
        assert run(command, path, tmp_path) == 0, capsys.readouterr().err
    if "export" in commands:
        spec = importlib.util.spec_from_file_location("exported_sneaky", tmp_path / "out" / "exported.py")
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    out, err = capsys.readouterr()
    assert not marker.exists()
    assert "EXECUTED" not in out + err
