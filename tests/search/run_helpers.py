"""Driving a search process from a test by the states it commits, not by the clock."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path


def optsearch(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "optsearch", *map(str, args), "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def finished_evaluations(db: Path) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT COUNT(*) FROM programs WHERE eval_index IS NOT NULL").fetchone()[0]
    finally:
        con.close()


@contextmanager
def writes_held(db: Path):
    """Hold the store's write lock: the search process can commit nothing while inside, so the
    state read here is the state it is in (it waits at its next commit)."""
    con = sqlite3.connect(db, timeout=60, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        yield con
        con.execute("ROLLBACK")
    finally:
        con.close()


def hold_after(proc: subprocess.Popen, db: Path, evaluations: int, deadline_s: float = 120.0):
    """Step the search in `proc` until it has committed at least `evaluations` finished evaluations,
    and return holding its store's write lock (a context manager already entered: `.__exit__` it,
    or leave it to `release`). Between steps the search may commit, while a step is held it may not."""
    deadline = time.monotonic() + deadline_s
    while not (db.exists() and _has_schema(db)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run store was never created"
        time.sleep(0.01)
    while True:
        held = writes_held(db)
        held.__enter__()
        done = finished_evaluations(db)
        if done >= evaluations:
            return held, done
        held.__exit__(None, None, None)
        while finished_evaluations(db) == done:   # let it commit one more evaluation, then hold again
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"stuck at {done} evaluations"
            time.sleep(0.005)


def _has_schema(db: Path) -> bool:
    try:
        finished_evaluations(db)
        return True
    except sqlite3.OperationalError:
        return False
