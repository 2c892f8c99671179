"""Keep freed memory in the process instead of returning it to the OS (glibc's malloc).

An evaluation allocates the same large temporaries at every step (a batch of parameter copies,
Newton-Schulz products, an imitation stream's slices). By default glibc serves blocks above
`M_MMAP_THRESHOLD` with fresh `mmap`s and gives free memory at the top of the heap back above
`M_TRIM_THRESHOLD`, so each step faults the same pages in again: measured on
`configs/imitate_lion.yaml`, half the wall time was system time (4.5-5.1 million minor faults in
200 evaluations). `keep_freed_memory()` raises both thresholds for the calling process, once;
`evaluate` calls it, so every process that evaluates (inline, a Ray worker, `optsearch eval`)
does. It changes no number a program computes, only where the allocator finds memory.
`OPTSEARCH_KEEP_FREED_MEMORY=0` leaves glibc's defaults (for measuring the difference:
`benchmarks/evals_per_second.py`).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from functools import cache

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20   # glibc's largest accepted value on 64-bit (HEAP_MAX / 2)
TRIM_THRESHOLD = 1 << 30    # keep up to 1 GiB of freed heap before trimming


@cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds in this process; True if they were set (False on
    another libc or platform, or with `OPTSEARCH_KEEP_FREED_MEMORY=0`)."""
    if os.environ.get("OPTSEARCH_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):   # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
