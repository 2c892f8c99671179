"""Run a fixed list of evaluation jobs in N local processes and get their results in job order.

For work known in advance (a report's contenders x held-out tasks), not the search's stream of
children (that is what `Executor`s are for). Every job runs with one torch thread, in the calling
process (`processes=1`) or in a worker started by `spawn` (torch is not safe to fork once it has
run), so a job's result is the same whatever the number of processes: it depends on the job
alone (its seeds fix each copy's initialisation and data).

With `cache`, each job's result is kept in that folder under a key made of the job, the torch
version and the stored AdamW references (what a fitness is measured against), and a later call
with the same job reads it instead of training again: held-out evaluations of the baselines take
an hour on a laptop, and do not change when the winner does.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import multiprocessing
import os
import pickle
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import torch

from optsearch.evaluators.evaluate import EvalResult
from optsearch.evaluators.executor import EvalJob, run_job


def run_jobs(jobs: Sequence[EvalJob], processes: int = 1,
             done: Callable[[int, EvalResult], None] = lambda index, result: None,
             cache: Path | None = None) -> list[EvalResult]:
    """The results of `jobs`, in their order; `done(i, result)` is called as job i finishes
    (or is read from `cache`)."""
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    if cache is not None:
        return _cached(jobs, processes, done, Path(cache))
    results: list[EvalResult | None] = [None] * len(jobs)
    if processes == 1 or len(jobs) <= 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for i, job in enumerate(jobs):
                results[i] = run_job(job)
                done(i, results[i])
        finally:
            torch.set_num_threads(threads)
        return results  # type: ignore[return-value]
    pool = cf.ProcessPoolExecutor(min(processes, len(jobs)), multiprocessing.get_context("spawn"),
                                  initializer=_one_thread)
    try:
        futures = {pool.submit(run_job, job): i for i, job in enumerate(jobs)}
        for future in cf.as_completed(futures):
            i = futures[future]
            results[i] = future.result()
            done(i, results[i])
    finally:  # on an interrupt, jobs not started are dropped instead of waited for
        pool.shutdown(cancel_futures=True)
    return results  # type: ignore[return-value]


def _cached(jobs: Sequence[EvalJob], processes: int, done: Callable[[int, EvalResult], None],
            cache: Path) -> list[EvalResult]:
    cache.mkdir(parents=True, exist_ok=True)
    paths = [cache / f"{job_key(job)}.pkl" for job in jobs]
    results: list[EvalResult | None] = [None] * len(jobs)
    for i, path in enumerate(paths):
        if path.exists():
            results[i] = pickle.loads(path.read_bytes())
            done(i, results[i])
    todo = [i for i, r in enumerate(results) if r is None]

    def finished(k: int, result: EvalResult) -> None:
        i = todo[k]
        results[i] = result
        fd, tmp = tempfile.mkstemp(dir=cache, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(result, f)
        os.replace(tmp, paths[i])
        done(i, result)

    run_jobs([jobs[i] for i in todo], processes, finished)
    return results  # type: ignore[return-value]


def job_key(job: EvalJob) -> str:
    """What a job's result depends on, hashed: the job, the torch version and the stored references."""
    from optsearch.proxy_tasks.references import REFERENCES_PATH
    references = REFERENCES_PATH.read_bytes() if REFERENCES_PATH.exists() else b""
    text = f"{job!r}|torch {torch.__version__}|".encode() + hashlib.sha256(references).digest()
    return hashlib.sha256(text).hexdigest()[:32]


def _one_thread() -> None:
    torch.set_num_threads(1)


__all__ = ["run_jobs"]
