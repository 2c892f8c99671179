"""A search killed with SIGKILL mid-run resumes, loses nothing, and ends as if never stopped.

The test stops the search at a state it observes (holding the store's write lock, so the search
waits at its next commit) and kills it there: no race against the clock.
"""
import json
import os
import signal
import sqlite3

import pytest

from tests.search.run_helpers import hold_after, optsearch as _optsearch

CONFIG = """
name: killed
seed: 11
warm_start: adamw
search: {population: 6, tournament: 3}
evaluation: {tasks: [imitate/small], lr_multipliers: [0.3, 1.0]}
budget: {evaluations: 40}
executor: {kind: inline}
"""
# Three islands of two that migrate every 4 evaluations and restart after 6 without progress:
# births, migrations and restarts on both sides of the kill.
ISLANDS = CONFIG.replace("search: {population: 6, tournament: 3}",
                         "search: {population: 6, tournament: 2, restart_after: 6,\n"
                         "         islands: {count: 3, migrate_every: 4, migrants: 1}}")
# The same run with the evaluation cascade and noise-aware promotion: first stages, drops and
# promotion re-checks are committed between the full evaluations, and may be in flight at the kill.
CASCADE_CONFIG = CONFIG.replace("search: {population: 6, tournament: 3}",
                                "search: {population: 6, tournament: 3, promotion: {seeds: 2}}").replace(
    "lr_multipliers: [0.3, 1.0]}", "lr_multipliers: [0.3, 1.0], cascade: {fraction: 0.25, margin: 0.02}}")

# All three at once: islands, the cascade and promotion.
ALL = ISLANDS.replace("restart_after: 6,", "restart_after: 6, promotion: {seeds: 2},").replace(
    "lr_multipliers: [0.3, 1.0]}", "lr_multipliers: [0.3, 1.0], cascade: {fraction: 0.25, margin: 0.02}}")


def _finished(db) -> list[tuple]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT id, text, status, fitness, eval_index FROM programs "
                           "WHERE eval_index IS NOT NULL ORDER BY id").fetchall()
        evals = con.execute("SELECT program_id, task, metric, fitness FROM evaluations ORDER BY id").fetchall()
    finally:
        con.close()
    return rows, evals


def _counters(db) -> dict:
    """The run's committed counters, less the wall time."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        state = json.loads(con.execute("SELECT value FROM meta WHERE key = 'search_state'").fetchone()[0])
    finally:
        con.close()
    counters = state["counters"]
    del counters["elapsed"]
    return counters


def _all(db) -> tuple[list[tuple], ...]:
    """The programs, the population (with islands) and the events other than the sessions' own."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return (con.execute("SELECT id, text, hash, parent, mutation, status, fitness, eval_index FROM programs "
                            "ORDER BY id").fetchall(),
                con.execute("SELECT birth, program_id, fitness, island FROM population ORDER BY birth").fetchall(),
                con.execute("SELECT eval_index, kind, detail FROM events WHERE kind IN ('migration', 'restart') "
                            "ORDER BY id").fetchall())
    finally:
        con.close()


@pytest.mark.slow
@pytest.mark.parametrize("text", [CONFIG, ISLANDS, CASCADE_CONFIG, ALL],
                         ids=["one population", "islands", "cascade_promotion", "islands_cascade_promotion"])
def test_sigkill_then_resume_loses_nothing_and_matches_an_uninterrupted_run(tmp_path, text):
    config = tmp_path / "killed.yaml"
    config.write_text(text)
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    reference = _optsearch("evolve", str(config), "--run-dir", str(whole))

    proc = _optsearch("evolve", str(config), "--run-dir", str(killed))
    db = killed / "run.db"
    held, done = hold_after(proc, db, 12)       # the search waits at its next commit
    before_rows, before_evals = _finished(db)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    held.__exit__(None, None, None)
    assert len(before_rows) == done and 12 <= done < 40
    assert _finished(db) == (before_rows, before_evals)       # the kill lost no commit

    resumed = _optsearch("resume", str(killed))
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    after_rows, after_evals = _finished(db)
    assert after_rows[:len(before_rows)] == before_rows        # every finished evaluation is still there
    assert after_evals[:len(before_evals)] == before_evals
    assert len(after_rows) == 40 and "evaluation budget reached" in out

    out_ref, err_ref = reference.communicate(timeout=300)
    assert reference.returncode == 0, err_ref
    assert _all(db) == _all(whole / "run.db")                 # the same programs, lineage, fitness, population
    if text == ISLANDS:
        kinds = [kind for _, kind, _ in _all(db)[2]]
        assert kinds.count("migration") == 10 and "restart" in kinds
        assert {island for *_, island in _all(db)[1]} == {0, 1, 2}
    assert _counters(db) == _counters(whole / "run.db")       # drops, promotions and refusals included
    if text is CASCADE_CONFIG or text is ALL:
        counters = _counters(db)
        assert counters["dropped"] > 0 and counters["promotions"] > 0 and counters["stage1_evaluations"] > 40
    if text is ALL:
        assert "migration" in [kind for _, kind, _ in _all(db)[2]]
    best = [line for line in out.splitlines() if line.startswith("winner:")]
    assert best and best[0].replace(str(killed), "RUN") == \
        [line for line in out_ref.splitlines() if line.startswith("winner:")][0].replace(str(whole), "RUN")


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_says_how_to_resume(tmp_path):
    config = tmp_path / "killed.yaml"
    config.write_text(CONFIG)
    run = tmp_path / "run"
    proc = _optsearch("evolve", str(config), "--run-dir", str(run))
    held, _ = hold_after(proc, run / "run.db", 3)   # mid-run for sure: it waits at its next commit
    proc.send_signal(signal.SIGTERM)
    held.__exit__(None, None, None)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"Continue with `optsearch resume {run}`" in err
    resumed = _optsearch("resume", str(run))
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0 and "40 evaluations" in out, err
