"""One writer per run: an exclusive lock on `runs/NAME/run.lock`, held while a store is open for writing.

The lock is `flock` on an open file, so the kernel drops it when its holder exits in any way
(SIGKILL included): a killed run never blocks its own resume, and no stale pid file needs
judging. The file also says who holds it (pid, host, since when), for the refusal message;
its content is only information, the lock is the `flock`.
"""
from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from optsearch.dsl import OptsearchError

LOCK_FILE = "run.lock"


class RunLocked(OptsearchError):
    """Another process writes this run."""


class RunLock:
    """The exclusive write lock of the run in `run_dir`; `acquire` refuses at once if another holds it."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise RunLocked(f"{self.path.parent}: the run is being written by another process ({holder}); "
                            f"wait for it to end or stop it, then resume") from None
        except BaseException:
            os.close(fd)
            raise
        since = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {since}\n".encode(), 0)
        except OSError:
            pass  # a full disk: the lock holds all the same, only its note is missing
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (closing the file drops it; exiting the process would too)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read(fd: int) -> str:
    try:
        text = os.pread(fd, 512, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "its pid is not written yet"


__all__ = ["LOCK_FILE", "RunLock", "RunLocked"]
