"""Executors: submit evaluation jobs, receive results as they finish.

Every executor has the same small interface (`submit`, `next_result`, `pending`, `workers`,
`close`), so the search keeps all workers busy without knowing where they run. `InlineExecutor`
runs each job in the calling process when its result is asked for: exact reproducibility,
easy debugging, and the reference the Ray executor is measured against.
"""
from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import torch

from optsearch.dsl import OptsearchError, Program, ProgramError, RoleProgram, parse_candidate
from optsearch.dsl.subspace import Subspace, subspace_from_options, subspace_program
from optsearch.evaluators.evaluate import EvalResult, evaluate
from optsearch.evaluators.fitness import DEFAULT_LR_MULTIPLIERS


class ExecutorLost(OptsearchError):
    """The executor can evaluate nothing more: its Ray instance (or the node the driver runs on)
    stopped. Finished results were all handed back; jobs still pending are lost with it."""


@dataclass(frozen=True)
class SubspaceOptions:
    """Run each program in a low-rank subspace (optsearch.dsl.subspace); None takes the transform's
    default, and rank 0 means the plain program."""

    rank: int = 0
    projection: str = "online"
    update_every: int | None = None        # svd: steps between SVD refreshes
    lr: float | None = None                # online: step size of the projection's update

    def transform(self) -> Subspace | None:
        """The transform these options ask for (`OptsearchError` for a bad combination)."""
        return subspace_from_options(self.rank, self.projection, self.update_every, self.lr)


@dataclass(frozen=True)
class EvalJob:
    """One evaluation: a program or a role candidate (as text, so it crosses process boundaries) and
    where to train it."""

    program: str
    tasks: tuple[str, ...] = ("quadratic/small",)
    seeds: tuple[int, ...] = (0,)
    lr_multipliers: tuple[float, ...] = DEFAULT_LR_MULTIPLIERS
    time_limit: float | None = None
    device: str = "cpu"
    subspace: SubspaceOptions | None = None   # None runs the plain program
    fraction: float = 1.0                     # of each task's budget (a cascade's stage 1: < 1)


@dataclass
class JobResult:
    job_id: int
    job: EvalJob
    result: EvalResult
    worker: str = "inline"
    extra: dict = field(default_factory=dict)


class Executor(Protocol):
    workers: int

    def submit(self, job: EvalJob) -> int: ...
    def next_result(self, timeout: float | None = None) -> JobResult | None: ...
    def pending(self) -> int: ...
    def close(self) -> None: ...


def run_job(job: EvalJob) -> EvalResult:
    """Parse and evaluate a job; a program that does not parse is an `invalid` result."""
    try:
        program: Program | RoleProgram = parse_candidate(job.program)  # or one program per parameter role
    except ProgramError as e:
        return EvalResult("invalid", float("-inf"), [], 0.0, str(e))
    step = program
    if job.subspace is not None and job.subspace.rank:
        if isinstance(program, RoleProgram):
            return EvalResult("invalid", float("-inf"), [], 0.0, "a role candidate cannot run in a subspace")
        try:
            step = subspace_program(program, job.subspace.transform())
        except ProgramError as e:
            return EvalResult("invalid", float("-inf"), [], 0.0, str(e))
    device = job.device
    if device == "auto":  # where the job runs decides: a worker that owns a GPU share uses it
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return evaluate(step, job.tasks, job.seeds, job.lr_multipliers, job.time_limit, device, job.fraction)


class InlineExecutor:
    """Runs jobs one at a time, in submission order, in this process."""

    workers = 1

    def __init__(self) -> None:
        self._queue: deque[tuple[int, EvalJob]] = deque()
        self._ids = itertools.count()

    def submit(self, job: EvalJob) -> int:
        job_id = next(self._ids)
        self._queue.append((job_id, job))
        return job_id

    def next_result(self, timeout: float | None = None) -> JobResult | None:
        """The oldest job's result (computed now), or None when nothing is pending."""
        if not self._queue:
            return None
        job_id, job = self._queue.popleft()
        return JobResult(job_id, job, run_job(job))

    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        self._queue.clear()
