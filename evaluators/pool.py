"""Run a fixed list of evaluation jobs in N local processes and get their results in job order.

For work known in advance (a report's contenders x held-out tasks), not the search's stream of
children (that is what `Executor`s are for). Every job runs with one torch thread, in the calling
process (`processes=1`) or in a worker started by `spawn` (torch is not safe to fork once it has
run), so a job's result is the same whatever the number of processes: it depends on the job
alone (its seeds fix each copy's initialisation and data).
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from typing import Callable, Sequence

import torch

from optsearch.evaluators.evaluate import EvalResult
from optsearch.evaluators.executor import EvalJob, run_job


def run_jobs(jobs: Sequence[EvalJob], processes: int = 1,
             done: Callable[[int, EvalResult], None] = lambda index, result: None) -> list[EvalResult]:
    """The results of `jobs`, in their order; `done(i, result)` is called as job i finishes."""
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
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


def _one_thread() -> None:
    torch.set_num_threads(1)


__all__ = ["run_jobs"]
