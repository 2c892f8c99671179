"""One writer per run: a second process is refused at once and says who writes; a killed writer
never blocks the resume."""
import os
import signal
import socket
import sqlite3

import pytest

from optsearch.dsl import OptsearchError
from optsearch.search.lock import RunLocked
from optsearch.search.store import RunStore
from tests.search.run_helpers import hold_after, optsearch

CONFIG = """
name: locked
seed: 11
search: {population: 6, tournament: 3}
evaluation: {tasks: [imitate/small], lr_multipliers: [0.3, 1.0]}
budget: {evaluations: 30}
executor: {kind: inline}
"""


def test_a_store_open_for_writing_keeps_other_writers_out_but_not_readers(tmp_path):
    store = RunStore.create(tmp_path / "run", {})
    with pytest.raises(RunLocked, match=rf"being written by another process \(pid {os.getpid()} on "
                                        rf"{socket.gethostname()}, since "):
        RunStore.open(tmp_path / "run")
    with pytest.raises(OptsearchError, match="a run already exists here|being written"):
        RunStore.create(tmp_path / "run", {})
    with RunStore.open(tmp_path / "run", readonly=True) as reader:   # `optsearch show` while it runs
        assert reader.count_programs() == 0
    store.close()
    with RunStore.open(tmp_path / "run") as again:                    # closed: the lock is free
        assert again.count_programs() == 0


def _evaluation_numbers(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [n for (n,) in con.execute("SELECT eval_index FROM programs WHERE eval_index IS NOT NULL "
                                          "ORDER BY eval_index")]
    finally:
        con.close()


@pytest.mark.slow
def test_a_second_process_is_refused_at_once_and_a_killed_writer_does_not_block_the_resume(tmp_path):
    config = tmp_path / "locked.yaml"
    config.write_text(CONFIG)
    run = tmp_path / "run"
    db = run / "run.db"
    first = optsearch("evolve", config, "--run-dir", run)
    held, done = hold_after(first, db, 3)        # the first search is mid-run while the others try
    for argv in (("resume", run), ("evolve", config, "--run-dir", run, "--resume")):
        second = optsearch(*argv)
        out, err = second.communicate(timeout=60)
        assert second.returncode == 2, err
        assert err.count("\n") == 1 and f"being written by another process (pid {first.pid} on " in err, err
    held.__exit__(None, None, None)
    held, _ = hold_after(first, db, done + 1)    # it goes on undisturbed
    first.send_signal(signal.SIGKILL)
    first.wait()
    held.__exit__(None, None, None)
    assert done < 30
    resumed = optsearch("resume", run)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert _evaluation_numbers(db) == list(range(1, 31))      # one writer: no evaluation numbered twice
