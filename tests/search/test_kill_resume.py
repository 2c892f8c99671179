"""A search killed with SIGKILL at a random moment resumes, loses nothing, and ends as if never stopped."""
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

CONFIG = """
name: killed
seed: 11
warm_start: adamw
search: {population: 6, tournament: 3}
evaluation: {tasks: [imitate/small], lr_multipliers: [0.3, 1.0]}
budget: {evaluations: 40}
executor: {kind: inline}
"""


def _optsearch(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "optsearch", *args, "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _finished(db) -> list[tuple]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT id, text, status, fitness, eval_index FROM programs "
                           "WHERE eval_index IS NOT NULL ORDER BY id").fetchall()
        evals = con.execute("SELECT program_id, task, metric, fitness FROM evaluations ORDER BY id").fetchall()
    finally:
        con.close()
    return rows, evals


def _all(db) -> list[tuple]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT id, text, hash, parent, mutation, status, fitness, eval_index FROM programs "
                           "ORDER BY id").fetchall()
    finally:
        con.close()


@pytest.mark.slow
def test_sigkill_then_resume_loses_nothing_and_matches_an_uninterrupted_run(tmp_path):
    config = tmp_path / "killed.yaml"
    config.write_text(CONFIG)
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    reference = _optsearch("evolve", str(config), "--run-dir", str(whole))

    proc = _optsearch("evolve", str(config), "--run-dir", str(killed))
    db = killed / "run.db"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if db.exists():
            try:
                if len(_finished(db)[0]) >= 12:
                    break
            except sqlite3.OperationalError:
                pass  # the schema is being created
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before_rows, before_evals = _finished(db)
    assert 12 <= len(before_rows) < 40

    resumed = _optsearch("resume", str(killed))
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    after_rows, after_evals = _finished(db)
    assert after_rows[:len(before_rows)] == before_rows        # every finished evaluation is still there
    assert after_evals[:len(before_evals)] == before_evals
    assert len(after_rows) == 40 and "evaluation budget reached" in out

    out_ref, err_ref = reference.communicate(timeout=300)
    assert reference.returncode == 0, err_ref
    assert _all(db) == _all(whole / "run.db")                 # the same programs, lineage and fitness
    best = [line for line in out.splitlines() if line.startswith("winner:")]
    assert best and best[0].replace(str(killed), "RUN") == \
        [line for line in out_ref.splitlines() if line.startswith("winner:")][0].replace(str(whole), "RUN")


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_says_how_to_resume(tmp_path):
    config = tmp_path / "killed.yaml"
    config.write_text(CONFIG)
    run = tmp_path / "run"
    proc = _optsearch("evolve", str(config), "--run-dir", str(run))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not ((run / "run.db").exists() and _has_results(run / "run.db")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"Continue with `optsearch resume {run}`" in err
    resumed = _optsearch("resume", str(run))
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0 and "40 evaluations" in out, err


def _has_results(db) -> bool:
    try:
        return len(_finished(db)[0]) >= 3
    except sqlite3.OperationalError:
        return False
