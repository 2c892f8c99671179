"""A full disk and a damaged store are one line and exit code 2, never a traceback, and make
nothing worse: what was stored stays, and the run resumes once the cause is gone."""
import os
import sqlite3
import subprocess
from dataclasses import replace

import pytest

from optsearch.discovered import load_zoo
from optsearch.dsl import OptsearchError
from optsearch.evaluators import InlineExecutor
from optsearch.search.evolution import Evolution
from optsearch.search.settings import EvaluationSettings, SearchSettings
from optsearch.search.store import RunStore

CONFIG = """
name: tiny
seed: 5
search: {population: 4, tournament: 2}
evaluation: {tasks: [imitate/small], lr_multipliers: [1.0]}
budget: {evaluations: 8}
executor: {kind: inline}
"""
FAST = EvaluationSettings(tasks=("imitate/small",), seeds=1, lr_multipliers=(1.0,), time_limit=60)
SETTINGS = SearchSettings(seed=5, population=4, tournament=2, evaluations=14, evaluation=FAST)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(CONFIG)
    return path


def _one_line(r, *phrases):
    assert r.code == 2, r.err
    assert r.err.count("\n") == 1 and "Traceback" not in r.err, r.err
    for phrase in phrases:
        assert phrase in r.err, r.err


def _rows(store):
    return [(r.id, r.text, r.status, r.fitness, r.parent, r.mutation, r.eval_index) for r in store.programs()]


def _search(store):
    return Evolution(SETTINGS, store, InlineExecutor(), load_zoo("adamw")).run()


def test_a_full_disk_mid_run_stops_at_the_last_commit_and_the_run_resumes_when_space_is_freed(tmp_path):
    with RunStore.create(tmp_path / "whole", {}) as whole:
        _search(whole)
        expected = _rows(whole)
    store = RunStore.create(tmp_path / "run", {})
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages + 1}")   # SQLite's own "database or disk is full"
    with pytest.raises(OptsearchError) as stopped:
        _search(store)
    message = str(stopped.value)
    assert "database or disk is full" in message and "optsearch resume" in message and "\n" not in message
    partial = _rows(store)
    store.close()
    with RunStore.open(tmp_path / "run") as again:          # space freed: a new connection has no limit
        assert _rows(again)[:len(partial)] == partial
        _search(again)
        assert _rows(again) == expected                      # as if it had never stopped


def _damage_the_last_page(db):
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.seek(size - 4096)
        f.write(b"\xa5" * 4096)


def test_a_damaged_store_is_one_line_from_show_and_resume_and_is_left_as_it_was(cli, config, tmp_path):
    run = tmp_path / "run"
    assert cli("evolve", config, "--run-dir", run, "--quiet").code == 0
    db = run / "run.db"
    _damage_the_last_page(db)
    damaged = db.read_bytes()
    for argv in (("show", run), ("show", run, "--json"), ("resume", run, "--quiet"),
                 ("export", f"{run}#1", "-o", tmp_path / "x.py")):
        _one_line(cli(*argv), f"{db}: the run store is damaged", "malformed")
    assert db.read_bytes() == damaged


def test_no_damaged_page_gives_a_traceback_or_gets_written_to(cli, config, tmp_path):
    run = tmp_path / "run"
    assert cli("evolve", config, "--run-dir", run, "--quiet").code == 0
    db = run / "run.db"
    good = db.read_bytes()
    for page in range(2, len(good) // 4096 + 1):       # page 1, the header, is the header test's
        db.write_bytes(good[:(page - 1) * 4096] + b"\xa5" * 4096 + good[page * 4096:])
        damaged = db.read_bytes()
        for argv in (("show", run), ("resume", run, "--quiet")):
            r = cli(*argv)
            assert r.code == 2 and r.err.count("\n") == 1 and "the run store is damaged" in r.err, (page, r.err)
        assert db.read_bytes() == damaged, page


def test_a_store_without_its_search_state_is_refused_rather_than_numbering_evaluations_twice(cli, config, tmp_path):
    run = tmp_path / "run"
    assert cli("evolve", config, "--run-dir", run, "--quiet").code == 0
    con = sqlite3.connect(run / "run.db")
    con.execute("DELETE FROM meta WHERE key = 'search_state'")
    con.commit()
    con.close()
    before = (run / "run.db").read_bytes()
    _one_line(cli("resume", run, "--quiet", "--max-evals", "12"), "no search state", "cannot be resumed")
    assert (run / "run.db").read_bytes() == before


# --- a real full disk: a small tmpfs (needs root; skipped elsewhere) ------------------------------

@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _fill(path):
    """Write zeros to `path` until the disk is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def test_a_run_started_on_a_full_disk_leaves_nothing_that_blocks_the_directory(cli, config, small_disk):
    filler = small_disk / "filler"
    _fill(filler)
    run = small_disk / "run"
    _one_line(cli("evolve", config, "--run-dir", run, "--quiet"), "the disk is full; no run was created")
    assert not (run / "run.db").exists()
    filler.unlink()
    r = cli("evolve", config, "--run-dir", run, "--quiet")
    assert r.code == 0, r.err


def test_a_disk_that_fills_mid_run_is_one_line_and_the_run_resumes_after_space_is_freed(cli, config, small_disk):
    run = small_disk / "run"
    r = cli("evolve", config, "--run-dir", run, "--quiet", "--max-evals", "2")
    assert r.code == 0, r.err
    filler = small_disk / "filler"
    _fill(filler)
    # free a few pages so the search starts, commits a little, then meets the full disk
    os.truncate(filler, max(0, filler.stat().st_size - 64 * 4096))
    r = cli("resume", run, "--quiet", "--max-evals", "400")
    _one_line(r, "disk is full", f"optsearch resume {run}")
    con = sqlite3.connect(f"file:{run / 'run.db'}?mode=ro", uri=True)
    numbers = [n for (n,) in con.execute("SELECT eval_index FROM programs WHERE eval_index IS NOT NULL "
                                         "ORDER BY eval_index")]
    con.close()
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) > 2
    filler.unlink()
    r = cli("resume", run, "--quiet", "--max-evals", str(len(numbers) + 3))
    assert r.code == 0 and f"{len(numbers) + 3} evaluations" in r.out, r.err
