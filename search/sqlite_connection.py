"""A SQLite connection whose faults are user errors: what SQLite reports about the file (full,
damaged, not a database, unreadable) becomes one `StoreError` naming the file, the cause and what
to do; constraint violations and misuse stay bugs and raise as they are."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from optsearch.dsl import OptsearchError


class StoreError(OptsearchError):
    """The run store cannot be used as it is: a full disk, a damaged file, lost search state."""

    def __init__(self, message: str, full: bool = False):
        super().__init__(message)
        self.full = full      # the disk (or the store's size limit) is full


def _store_error(path: Path, e: sqlite3.DatabaseError) -> OptsearchError | None:
    """The user's one line for what SQLite reported about the file at `path` (None: a bug, not a fault)."""
    name = getattr(e, "sqlite_errorname", "")
    run = path.parent
    if name == "SQLITE_FULL" or "disk is full" in str(e):
        return StoreError(f"{path}: the disk is full ({e}); the run stopped at its last commit and nothing stored is "
                          f"lost: free some space, then `optsearch resume {run}`", full=True)
    if name == "SQLITE_NOTADB" or "not a database" in str(e):
        return StoreError(f"{path}: not a run store ({e})")
    if name == "SQLITE_CORRUPT" or "malformed" in str(e):
        return StoreError(f"{path}: the run store is damaged ({e}) and was left as it is; it cannot be shown or "
                          f"resumed (`sqlite3 {path} .recover` may save what it holds)")
    if name.startswith(_FILE_FAULTS):
        return StoreError(f"{path}: the run store cannot be used ({e})")
    return None


# What SQLite says about the file and its surroundings (permissions, I/O, another lock holder), as
# opposed to what it says about a statement (a bug here).
_FILE_FAULTS = ("SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_PERM",
                "SQLITE_AUTH", "SQLITE_NOLFS", "SQLITE_PROTOCOL")


class Connection:
    """A SQLite connection whose statements run and fetch inside one guard: what SQLite reports about
    the file (full, damaged, unreadable) becomes a `StoreError`; constraint violations stay bugs."""

    def __init__(self, path: Path, uri: str):
        self.path = path
        self.raw = self._guard(lambda: sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30.0))
        self.raw.row_factory = sqlite3.Row

    def _guard(self, work):
        try:
            return work()
        except sqlite3.DatabaseError as e:
            error = _store_error(self.path, e)
            if error is None:
                raise
            raise error from None

    def execute(self, sql: str, params: tuple | list = ()) -> "Result":
        return self._guard(lambda: Result(self.raw.execute(sql, params)))

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    def close(self) -> None:
        self.raw.close()


class Result:
    """A statement's rows, fetched while the guard was up."""

    def __init__(self, cursor: sqlite3.Cursor):
        self.lastrowid = cursor.lastrowid
        self.rows = cursor.fetchall()

    def fetchone(self):
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list:
        return self.rows


__all__ = ["Connection", "Result", "StoreError"]
