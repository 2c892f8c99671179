"""The run store: one SQLite database (WAL) per run, at `runs/NAME/run.db`.

It holds the resolved config, every program (text, canonical hash, fingerprint, parent,
mutation), every evaluation (per task: metrics, fitness, status, worker, time), the
population, the search's RNG state and counters, and a fitness history for plots. Every change
the search makes is one transaction (`with store.transaction():`), so a process killed at any
instant (SIGKILL included) leaves the database at the last commit: nothing finished is lost,
and `optsearch resume` continues from there. WAL with `synchronous=NORMAL` is durable against
process crashes; against power loss the last commits may be lost, never the database's integrity.

Readers (`optsearch show`) open the same file while a search writes to it; WAL lets both run.
Writers are one at a time: opening a store for writing takes the run's lock
(`optsearch.search.lock`), so a second process is refused at once.

Faults are user errors with one line (`StoreError`), never tracebacks, and make nothing worse:
a full disk ends the failed transaction and leaves the last commit (resume once space is freed);
a damaged file or a store that lost its search state is refused as it is, before any write.
"""
from __future__ import annotations

import errno
import json
import math
import sqlite3
import time
from pathlib import Path
from typing import Any

from optsearch.dsl import OptsearchError
from optsearch.search.lock import RunLock
from optsearch.search.sqlite_connection import Connection, StoreError
from optsearch.search.records import (
    Counters, Finished, NestedTransactions, ProgramOrder, ProgramQuery, ProgramRow, SearchState,
)

RUN_DB = "run.db"
SIDE_FILES = ("-wal", "-shm")   # SQLite's WAL and shared-memory index beside run.db
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS programs (
    id INTEGER PRIMARY KEY,
    text TEXT NOT NULL,
    hash TEXT,
    fingerprint TEXT,
    parent INTEGER REFERENCES programs(id),
    mutation TEXT,
    status TEXT NOT NULL,          -- pending | ok | diverged | invalid | timeout | error | cached | dropped
    fitness REAL,                  -- NULL until known, and for -inf (failed programs)
    reuses INTEGER REFERENCES programs(id),   -- status cached: the program whose evaluation it reuses
    cache TEXT,                    -- cached: 'hash' or 'fingerprint'
    created REAL NOT NULL,
    finished REAL,
    eval_index INTEGER,            -- the n-th finished evaluation of the run (1-based)
    funnel_status TEXT,            -- NULL (not selected), pending, ok, diverged, ..., cancelled
    funnel_fitness REAL            -- fitness on the funnel's larger and held-out tasks
);
CREATE INDEX IF NOT EXISTS programs_hash ON programs(hash);
CREATE INDEX IF NOT EXISTS programs_status ON programs(status);
CREATE TABLE IF NOT EXISTS evaluations (
    id INTEGER PRIMARY KEY,
    program_id INTEGER NOT NULL REFERENCES programs(id),
    purpose TEXT NOT NULL,         -- search | funnel | stage1 (a cascade's first stage) | promotion
    task TEXT NOT NULL,
    size TEXT NOT NULL,
    status TEXT NOT NULL,
    metric REAL,
    fitness REAL,
    reference REAL,
    seeds TEXT NOT NULL,           -- JSON lists
    per_seed TEXT NOT NULL,
    best_lr TEXT NOT NULL,
    metrics TEXT NOT NULL,
    steps INTEGER,
    seconds REAL,
    state_per_param REAL,          -- optimizer-state numbers per model parameter
    error TEXT,
    worker TEXT,
    finished REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS evaluations_program ON evaluations(program_id);
CREATE TABLE IF NOT EXISTS population (
    birth INTEGER PRIMARY KEY,     -- order of arrival: the smallest is the oldest
    program_id INTEGER NOT NULL REFERENCES programs(id),
    fitness REAL,
    island INTEGER NOT NULL DEFAULT 0   -- search.islands: the member's island (0 for a single population)
);
CREATE TABLE IF NOT EXISTS history (
    eval_index INTEGER PRIMARY KEY,
    best REAL,
    median REAL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    eval_index INTEGER,
    kind TEXT NOT NULL,
    detail TEXT,
    at REAL NOT NULL
);
"""


def _num(x: float | None) -> float | None:
    """Non-finite floats are stored as NULL (SQLite has no inf)."""
    return x if x is not None and math.isfinite(x) else None


def _fit(x: float | None) -> float:
    return x if x is not None else -math.inf


# The SQL of each typed query and order (`optsearch.search.records`); no SQL leaves this module.
_QUERIES: dict[str, str] = {
    "all": "1",
    "pending": "status = 'pending'",
    "cached": "status = 'cached'",
    "evaluated": "eval_index IS NOT NULL",
    "funnel": "funnel_status IS NOT NULL",
    "funnel_pending": "funnel_status = 'pending'",
    "rechecked": "funnel_status IS NOT NULL AND funnel_status != 'pending'",
    "ranked": "status = 'ok' AND fitness IS NOT NULL",
}
_ORDERS: dict[str, str] = {"id": "id", "eval_index": "eval_index, id", "fitness": "fitness DESC, id"}


class RunStore(NestedTransactions):
    """A run's database. Use `RunStore.create` for a new run and `RunStore.open` for an existing one."""

    def __init__(self, path: Path, readonly: bool = False, lock: RunLock | None = None):
        self.path = Path(path)
        self._lock = lock
        uri = f"file:{self.path}?mode=ro" if readonly else f"file:{self.path}"
        self.db = Connection(self.path, uri)
        try:
            if not readonly:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            self.close()
            raise

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def create(cls, run_dir: Path, config: dict) -> "RunStore":
        """A new run's store, locked for writing. If the creation fails (a full disk), nothing is left
        behind that would block the directory."""
        run_dir = Path(run_dir)
        path = run_dir / RUN_DB
        exists = OptsearchError(f"{path}: a run already exists here; continue it with --resume "
                                f"(or `optsearch resume {run_dir}`), or choose another --run-dir")
        if path.exists() and not _empty(path):
            raise exists
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"{run_dir}: cannot make the run directory ({_why(e)})") from None
        lock = _lock(run_dir)
        if path.exists() and not _empty(path):
            lock.release()
            raise exists
        _remove(path)     # an empty file left by a creation that failed holds nothing
        store = None
        try:
            store = cls(path, lock=lock)
            with store.transaction():
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        store.db.execute(stmt)
                store._set("schema_version", SCHEMA_VERSION)
                store._set("config", config)
                store._set("created", time.time())
        except BaseException as e:
            if store is not None:
                store.close()
            else:
                lock.release()
            _remove(path)
            if isinstance(e, StoreError) and e.full:
                raise StoreError(f"{path}: the disk is full; no run was created and nothing is left behind: free "
                                 f"some space and start it again", full=True) from None
            raise
        return store

    @classmethod
    def open(cls, run_dir: Path, readonly: bool = False) -> "RunStore":
        """An existing run's store: read-only (any number of readers), or locked for writing (one
        writer). The file is checked first, so a damaged store is refused before anything is written."""
        run_dir = Path(run_dir)
        path = run_dir / RUN_DB if run_dir.suffix != ".db" else run_dir
        if not path.is_file():
            raise OptsearchError(f"no run store at {path.parent} (runs are created by `optsearch evolve CONFIG`)")
        if _empty(path):
            raise OptsearchError(f"{path}: the run store is empty (its creation failed): start the run again, "
                                 f"without --resume")
        lock = None if readonly else _lock(path.parent)
        try:
            store = cls(path, readonly=readonly, lock=lock)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        try:
            try:
                version = store.get("schema_version")
            except sqlite3.OperationalError as e:     # an SQLite file, not ours: no `meta` table
                raise StoreError(f"{path}: not a run store ({e})") from None
            if version != SCHEMA_VERSION:
                raise OptsearchError(f"{path}: run store version {version}, this optsearch reads {SCHEMA_VERSION}")
            store._check(readonly)
            if not readonly:
                store._upgrade()
        except BaseException:
            store.close()
            raise
        return store

    def _check(self, readonly: bool) -> None:
        """Refuse a damaged file, and (for writing) a store whose search state is gone: resuming it
        would restart the counters and number evaluations twice."""
        problems = [r[0] for r in self.db.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise StoreError(f"{self.path}: the run store is damaged (quick_check: {problems[0]}) and was left as it "
                             f"is; it cannot be shown or resumed (`sqlite3 {self.path} .recover` may save what "
                             f"it holds)")
        if not readonly and self.count_programs() and self.get("search_state") is None:
            raise StoreError(f"{self.path}: the run store has {self.count_programs()} programs but no search state "
                             f"(its counters and random state are lost), so it cannot be resumed without numbering "
                             f"evaluations twice; `optsearch show` still reads it")

    def _upgrade(self) -> None:
        """Bring a store written before islands up to this schema (its members are all on island 0)."""
        if not self._has_islands():
            with self.transaction():
                self.db.execute("ALTER TABLE population ADD COLUMN island INTEGER NOT NULL DEFAULT 0")

    def _has_islands(self) -> bool:
        return any(r[1] == "island" for r in self.db.execute("PRAGMA table_info(population)").fetchall())

    def close(self) -> None:
        """Close the database and drop the write lock (both idempotent)."""
        try:
            self.db.close()
        finally:
            if self._lock is not None:
                self._lock.release()

    def discard(self) -> None:
        """Close and delete a store this process has just created (its creation could not be completed)."""
        self.close()
        _remove(self.path)

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def _commit(self, begun: None) -> None:
        self.db.execute("COMMIT")

    def _rollback(self, begun: None) -> None:
        if self.db.in_transaction:   # SQLite may have rolled back already (a full disk does)
            self.db.execute("ROLLBACK")

    # --- meta ------------------------------------------------------------------------------

    def _set(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def get(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set(self, key: str, value: Any) -> None:
        with self.transaction():
            self._set(key, value)

    @property
    def config(self) -> dict:
        return self.get("config")

    def search_state(self) -> SearchState | None:
        """The search's counters and RNG state as of the last commit (None before the first)."""
        state = self.get("search_state")
        return None if state is None else SearchState.from_json(state)

    def save_search_state(self, state: SearchState) -> None:
        self.set("search_state", state.to_json())

    def counters(self) -> Counters:
        """The search's counters as of the last commit (all zero before the first)."""
        state = self.search_state()
        return Counters() if state is None else state.counters

    def finished(self) -> Finished | None:
        """Why the run's last session stopped (None: it is running, or was killed)."""
        d = self.get("finished")
        return None if d is None else Finished(d["reason"], d["evaluations"])

    def set_finished(self, finished: Finished) -> None:
        self.set("finished", {"reason": finished.reason, "evaluations": finished.evaluations})

    # --- programs and evaluations ------------------------------------------------------------

    def add_program(self, text: str, hash: str | None, fingerprint: str | None, parent: int | None,
                    mutation: str | None, status: str = "pending", fitness: float | None = None,
                    reuses: int | None = None, cache: str | None = None) -> int:
        with self.transaction():
            cur = self.db.execute(
                "INSERT INTO programs(text, hash, fingerprint, parent, mutation, status, fitness, reuses, cache, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (text, hash, fingerprint, parent, mutation, status, _num(fitness), reuses, cache, time.time()))
            return int(cur.lastrowid)

    def finish_program(self, program_id: int, status: str, fitness: float, eval_index: int | None) -> None:
        with self.transaction():
            self.db.execute("UPDATE programs SET status = ?, fitness = ?, finished = ?, eval_index = ? WHERE id = ?",
                            (status, _num(fitness), time.time(), eval_index, program_id))

    def set_funnel(self, program_id: int, status: str, fitness: float | None = None) -> None:
        with self.transaction():
            self.db.execute("UPDATE programs SET funnel_status = ?, funnel_fitness = ? WHERE id = ?",
                            (status, _num(fitness), program_id))

    def add_evaluation(self, program_id: int, score: Any, worker: str | None, purpose: str = "search") -> None:
        """Store one task score (`optsearch.evaluators.TaskScore`)."""
        with self.transaction():
            self.db.execute(
                "INSERT INTO evaluations(program_id, purpose, task, size, status, metric, fitness, reference, seeds,"
                " per_seed, best_lr, metrics, steps, seconds, state_per_param, error, worker, finished)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (program_id, purpose, score.task, score.size, score.status, _num(score.metric), _num(score.fitness),
                 _num(score.reference), json.dumps(list(score.seeds)),
                 json.dumps([_num(x) for x in score.per_seed]), json.dumps(list(score.best_lr)),
                 json.dumps([_num(x) for x in score.metrics]), score.steps, score.seconds,
                 getattr(score, "state_per_param", None), score.error, worker,
                 time.time()))

    def program(self, program_id: int) -> ProgramRow:
        row = self.db.execute("SELECT * FROM programs WHERE id = ?", (program_id,)).fetchone()
        if row is None:
            raise OptsearchError(f"{self.path}: no program with id {program_id} "
                                 f"(ids run from 1 to {self.count_programs()})")
        return _program_row(row)

    def programs(self, query: ProgramQuery = "all", order: ProgramOrder = "id") -> list[ProgramRow]:
        """The programs `query` selects (see `ProgramQuery`), in `order`."""
        if query not in _QUERIES or order not in _ORDERS:
            raise ValueError(f"unknown program query {query!r} or order {order!r}")
        rows = self.db.execute(f"SELECT * FROM programs WHERE {_QUERIES[query]} ORDER BY {_ORDERS[order]}").fetchall()
        return [_program_row(r) for r in rows]

    def state_per_param(self, program_id: int) -> float | None:
        """Mean optimizer state per parameter over the program's search evaluations (None: unknown)."""
        row = self.db.execute("SELECT AVG(state_per_param) FROM evaluations WHERE program_id = ? AND purpose = 'search'",
                              (program_id,)).fetchone()
        return row[0]

    def count_programs(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM programs").fetchone()[0])

    def evaluations(self, program_id: int | None = None, purpose: str | None = None) -> list[sqlite3.Row]:
        q, args = "SELECT * FROM evaluations WHERE 1", []
        if program_id is not None:
            q, args = q + " AND program_id = ?", args + [program_id]
        if purpose is not None:
            q, args = q + " AND purpose = ?", args + [purpose]
        return self.db.execute(q + " ORDER BY id", args).fetchall()

    def lineage(self, program_id: int) -> list[ProgramRow]:
        """The program and its ancestors back to the warm start, newest first."""
        out, seen = [], set()
        pid: int | None = program_id
        while pid is not None and pid not in seen:
            seen.add(pid)
            row = self.program(pid)
            out.append(row)
            pid = row.parent
        return out

    # --- population, history, events -------------------------------------------------------------

    def population(self) -> list[tuple[int, int, float]]:
        """(birth, program id, fitness), oldest first."""
        rows = self.db.execute("SELECT birth, program_id, fitness FROM population ORDER BY birth").fetchall()
        return [(int(b), int(p), _fit(f)) for b, p, f in rows]

    def population_islands(self) -> dict[int, int]:
        """The island of each member not on island 0, by birth (a store read before islands: none)."""
        if not self._has_islands():
            return {}
        rows = self.db.execute("SELECT birth, island FROM population WHERE island != 0").fetchall()
        return {int(b): int(i) for b, i in rows}

    def push_population(self, birth: int, program_id: int, fitness: float, size: int, island: int = 0) -> None:
        """Add a member to `island`; remove that island's oldest while it has more than `size` (ageing)."""
        with self.transaction():
            self.db.execute("INSERT INTO population(birth, program_id, fitness, island) VALUES (?, ?, ?, ?)",
                            (birth, program_id, _num(fitness), island))
            self.db.execute("DELETE FROM population WHERE birth IN (SELECT birth FROM population WHERE island = ? "
                            "ORDER BY birth LIMIT MAX(0, (SELECT COUNT(*) FROM population WHERE island = ?) - ?))",
                            (island, island, size))

    def clear_population(self, island: int | None = None) -> None:
        """Remove every member (or those of `island`)."""
        with self.transaction():
            if island is None:
                self.db.execute("DELETE FROM population")
            else:
                self.db.execute("DELETE FROM population WHERE island = ?", (island,))

    def add_history(self, eval_index: int, best: float, median: float | None) -> None:
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO history(eval_index, best, median, at) VALUES (?, ?, ?, ?)",
                            (eval_index, _num(best), _num(median), time.time()))

    def history(self) -> list[tuple[int, float, float]]:
        rows = self.db.execute("SELECT eval_index, best, median FROM history ORDER BY eval_index").fetchall()
        return [(int(i), _fit(b), _fit(m)) for i, b, m in rows]

    def add_event(self, kind: str, detail: str, eval_index: int | None = None) -> None:
        with self.transaction():
            self.db.execute("INSERT INTO events(eval_index, kind, detail, at) VALUES (?, ?, ?, ?)",
                            (eval_index, kind, detail, time.time()))

    def events(self) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM events ORDER BY id").fetchall()


def _lock(run_dir: Path) -> RunLock:
    try:
        return RunLock(run_dir).acquire()
    except OSError as e:
        raise StoreError(f"{run_dir}: cannot lock the run ({_why(e)})") from None


def _empty(path: Path) -> bool:
    """A zero-byte run.db with no WAL beside it: what a creation on a full disk leaves."""
    wal = path.with_name(path.name + "-wal")
    return path.is_file() and path.stat().st_size == 0 and (not wal.exists() or wal.stat().st_size == 0)


def _remove(path: Path) -> None:
    for p in (path, *(path.with_name(path.name + suffix) for suffix in SIDE_FILES)):
        p.unlink(missing_ok=True)


def _why(e: OSError) -> str:
    return "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))


def _program_row(r: sqlite3.Row) -> ProgramRow:
    return ProgramRow(r["id"], r["text"], r["hash"], r["fingerprint"], r["parent"], r["mutation"], r["status"],
                      _fit(r["fitness"]), r["reuses"], r["cache"], r["created"], r["finished"], r["eval_index"],
                      r["funnel_status"], None if r["funnel_status"] is None else _fit(r["funnel_fitness"]))


__all__ = ["RUN_DB", "ProgramRow", "RunStore", "StoreError"]
