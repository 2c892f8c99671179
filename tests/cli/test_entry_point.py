"""The real entry point, as a user runs it (two subprocesses; everything else runs in-process)."""
import subprocess
import sys
from pathlib import Path

import pytest


def run(command, *argv, cwd):
    return subprocess.run([*command, *argv], capture_output=True, text=True, cwd=cwd)


def test_console_script_checks_a_zoo_program(tmp_path):
    script = Path(sys.executable).parent / "optsearch"
    if not script.exists():
        pytest.skip("the optsearch console script is not installed next to this Python")
    r = run([str(script)], "check", "lion", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "hash: " in r.stdout


def test_python_m_optsearch_bad_program_exits_2_with_one_line(tmp_path):
    (tmp_path / "bad.py").write_text("def f(w, g, lr):\n    u = sgn(g)\n    return u\n")
    r = run([sys.executable, "-m", "optsearch"], "check", "bad.py", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith("optsearch: error: bad.py:2: unknown op 'sgn' (did you mean 'sign'")
    assert r.stderr.count("\n") == 1
