"""Every user error from every command that takes a PROGRAM: one line on stderr, exit code 2."""
from __future__ import annotations

import re

import pytest

# name -> (file contents, line the error names (None: about the whole file), a fragment of the cause)
BAD_PROGRAMS: dict[str, tuple[str | bytes, int | None, str]] = {
    "syntax_error": ("def f(w, g, lr):\n    u = g +\n    return u\n", 2, "syntax error"),
    "unknown_op": ("def f(w, g, lr):\n    u = sgn(g)\n    return u\n", 2, "did you mean 'sign'"),
    "wrong_arity": ("def f(w, g, lr):\n    u = sign(g, g)\n    return u\n", 2, "takes 1 argument, got 2"),
    "undefined_variable": ("def f(w, g, lr):\n    u = g * q\n    return u\n", 2, "'q' is used before"),
    "attribute_access": ("def f(w, g, lr):\n    u = g.abs()\n    return u\n", 2, "attribute access"),
    "import_at_top": ("import os\n\ndef f(w, g, lr):\n    return g\n", 1, "imports"),
    "import_in_body": ("def f(w, g, lr):\n    import os\n    return g\n", 2, "imports"),
    "call_open": ("def f(w, g, lr):\n    u = open('x')\n    return u\n", 2, "unknown op 'open'"),
    "scalar_update": ("def f(w, g, lr):\n    u = norm(g)\n    return u\n", 3, "is a scalar"),
    "matrix_op_on_a_row": ("def f(w, g, lr):\n    r = row_mean(g)\n    u = gram_mul(r, g)\n    return u\n", 3,
                           "gram_mul() needs a tensor for argument 'x', but 'r' is a row"),
    "matrix_op_variable_coefficient": (
        "def f(w, g, lr):\n    u = orthogonalize(g, lr, -4.775, 2.0315, 5.0, 1e-07)\n    return u\n", 2,
        "needs a constant (a number) for argument 'a'"),
    "missing_state": ("def f(w, g, lr, m):\n    u = g * lr\n    return u\n", 3, "(update, m)"),
    "missing_input": ("def f(w, g):\n    u = g * 0.1\n    return u\n", 1, "missing lr"),
    "two_functions": ("def f(w, g, lr):\n    return g\n\ndef h(w, g, lr):\n    return g\n", 4, "exactly one function"),
    "unknown_role": ("def f(w, g, lr):\n    return g\n\nroles = {'hiden': f, 'default': f}\n", 4,
                     "unknown role 'hiden' (did you mean 'hidden'?)"),
    "role_names_no_function": ("def f(w, g, lr):\n    return g\n\nroles = {'hidden': h, 'default': f}\n", 4,
                               "'h', which is no function of this file"),
    "role_left_out": ("def f(w, g, lr):\n    return g\n\nroles = {'hidden': f}\n", 4, "no program for the roles"),
    "empty_file": ("", None, "empty program"),
    "binary_file": (b"\x7fELF\x02\x01\x00\x00\xff\xfe", None, "not a program"),
    "nul_bytes": (b"def f(w, g, lr):\n    return g\x00\n", None, "not a program"),
    "not_utf8": (b"def f(w, g, lr):\n    return \xff\n", None, "UTF-8"),
}


@pytest.mark.parametrize("name", BAD_PROGRAMS)
def test_bad_program_is_one_line_naming_file_and_line(cli, argv_for, program_command, tmp_path, name):
    text, line, cause = BAD_PROGRAMS[name]
    path = tmp_path / f"{name}.py"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    r = cli(*argv_for(program_command, path))
    where = f"{re.escape(str(path))}:{line}: " if line else rf"{re.escape(str(path))}(:\d+)?: "
    assert r.code == 2
    assert re.match(f"optsearch: error: {where}", r.err), r.err
    assert cause in r.err
    assert r.err.count("\n") == 1 and "Traceback" not in r.err
    assert r.out == ""
    assert not (tmp_path / "out").exists()  # export wrote nothing


def test_missing_file_says_what_was_looked_for(cli, argv_for, program_command, tmp_path):
    r = cli(*argv_for(program_command, tmp_path / "nope.py"))
    assert r.code == 2
    assert r.err.startswith(f"optsearch: error: no program file or zoo program named '{tmp_path / 'nope.py'}'")
    assert "; zoo: " in r.err and " adamw," in r.err and r.err.count("\n") == 1


def test_misspelled_zoo_name_suggests_the_closest(cli, argv_for, program_command):
    r = cli(*argv_for(program_command, "lino"))
    assert r.code == 2
    assert "no program file or zoo program named 'lino' (did you mean 'lion'?)" in r.err


def test_directory_is_not_a_program(cli, argv_for, program_command, tmp_path):
    r = cli(*argv_for(program_command, tmp_path))
    assert r.code == 2
    assert r.err.startswith(f"optsearch: error: {tmp_path}: cannot read program file")


def test_run_reference_without_a_run_store(cli, argv_for, program_command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = cli(*argv_for(program_command, "runs/nightly#17"))
    assert r.code == 2
    assert r.err == "optsearch: error: no run store at runs/nightly (runs are created by `optsearch evolve CONFIG`)\n"


@pytest.mark.parametrize("spec", ["runs/nightly#", "#17"])
def test_malformed_run_reference(cli, tmp_path, monkeypatch, spec):
    monkeypatch.chdir(tmp_path)
    r = cli("check", spec)
    assert r.code == 2
    assert "expected runs/NAME#ID" in r.err


def test_every_program_command_is_covered(all_program_commands):
    # The tests above run over every command with a PROGRAM argument; make sure they find them.
    assert {"check", "export"} <= set(all_program_commands)


def test_unknown_command_is_a_usage_error(cli):
    r = cli("frobnicate")
    assert r.code == 2
    assert "invalid choice: 'frobnicate'" in r.err
