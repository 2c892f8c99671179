"""Evaluate one program on one or more proxy tasks: train, score against AdamW, aggregate."""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Sequence

import torch

from optsearch.dsl import Program, ProgramError, RoleProgram, StepFunction, as_step, compile_candidate, compile_program
from optsearch.evaluators.allocator import keep_freed_memory
from optsearch.evaluators.fitness import DEFAULT_LR_MULTIPLIERS, aggregate, best_over_lr, relative_fitness
from optsearch.evaluators.train import Status, train
from optsearch.proxy_tasks import ProxyTask, get_task


@dataclass
class TaskScore:
    """A program's result on one task at one size."""

    task: str
    size: str
    status: Status
    metric: float                 # mean over seeds of the best metric over lr multipliers
    fitness: float                # relative improvement over the AdamW reference (-inf: failed)
    reference: float | None
    seeds: list[int]
    lr_multipliers: list[float]
    per_seed: list[float]         # best metric of each seed
    best_lr: list[float]          # the lr multiplier that gave it
    metrics: list[float]          # every copy, seed-major
    steps: int
    seconds: float
    error: str | None = None
    state_per_param: float | None = None  # optimizer-state numbers per parameter of the task's model


@dataclass
class EvalResult:
    """The outcome of evaluating a program: a status, an aggregate fitness and per-task scores.

    `state_per_param` is the optimizer state one model copy keeps, per parameter (AdamW 2, Lion 1,
    Adafactor about (m + n) / (m n) for m x n matrices), averaged over the tasks; None where the
    program is invalid.
    """

    status: Status
    fitness: float
    scores: list[TaskScore] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    state_per_param: float | None = None

    def to_json(self) -> dict:
        """A JSON-safe dict (non-finite numbers become None)."""
        return json_safe(asdict(self))


def seed_fitnesses(result: EvalResult, tasks: int) -> list[float]:
    """Each seed's fitness: its best metric over lr multipliers against each task's reference,
    averaged over the `tasks` tasks (-inf for a seed that failed, or for every seed when a task
    did not run)."""
    scores = result.scores
    if not scores or len(scores) < tasks:
        return [-math.inf]
    n = len(scores[0].per_seed)
    return [aggregate([relative_fitness(s.per_seed[k], s.reference) if s.reference is not None else -math.inf
                       for s in scores]) for k in range(n)]


def json_safe(x):
    """`x` with every non-finite float (in dicts, lists and tuples too) replaced by None: JSON has no inf."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def evaluate(program: Program | RoleProgram | StepFunction, tasks: Sequence[ProxyTask | tuple[str, str] | str],
             seeds: Sequence[int] = (0,), lr_multipliers: Sequence[float] = DEFAULT_LR_MULTIPLIERS,
             time_limit: float | None = None, device: str | torch.device = "cpu",
             fraction: float = 1.0) -> EvalResult:
    """Train `program` on each task for every (seed, lr multiplier) and score it; never raises
    for a bad program (status `invalid`, `diverged`, `timeout` or `error` instead).

    With `fraction` < 1 each task trains that share of its budget (`shortened`): a cheap first
    stage whose fitnesses rank programs against each other, not against AdamW's full run.

    A role candidate (`RoleProgram`) is trained with one program per parameter group, by the
    task's parameter roles; fitness and state per parameter are measured as for a plain program.
    """
    start = time.perf_counter()
    keep_freed_memory()
    try:
        compiled = _checked(program)
    except ProgramError as e:
        return EvalResult("invalid", -math.inf, [], time.perf_counter() - start, str(e))
    scores = []
    for spec in tasks:
        task = shortened(resolve_task(spec, device), fraction)
        left = None if time_limit is None else max(0.0, time_limit - (time.perf_counter() - start))
        r = train(compiled, task, seeds, lr_multipliers, time_limit=left, device=device)
        best, where = best_over_lr(r.metrics, len(r.seeds), len(r.lr_multipliers))
        metric = sum(best) / len(best)
        ref = task.reference
        fit = relative_fitness(metric, ref) if ref is not None else -math.inf
        error = r.error if ref is not None else (r.error or f"no AdamW reference for {task.name}/{task.size}; "
                                                 "run `optsearch calibrate`")
        scores.append(TaskScore(task.name, task.size, r.status, metric, fit, ref, list(r.seeds),
                                list(r.lr_multipliers), best, [r.lr_multipliers[k] for k in where],
                                r.metrics, r.steps, r.seconds, error, state_per_param(compiled, task, seeds[0])))
        if r.status in ("invalid", "error", "timeout"):
            break
    status = _overall_status([s.status for s in scores])
    errors = [f"{s.task}/{s.size}: {s.error}" for s in scores if s.error]
    memory = [s.state_per_param for s in scores]
    mean_memory = sum(memory) / len(memory) if memory else None
    return EvalResult(status, aggregate([s.fitness for s in scores]), scores,
                      time.perf_counter() - start, "; ".join(errors) or None, mean_memory)


def _checked(program: Program | RoleProgram | StepFunction) -> RoleProgram | StepFunction:
    """`program` compiled; a role candidate with each of its programs checked (it is compiled per
    task, by the task's roles). Raises `ProgramError` naming the function at fault."""
    if not isinstance(program, RoleProgram):
        return as_step(program)
    for p in program.programs:
        try:
            compile_program(p)
        except ProgramError as e:
            raise ProgramError(f"function '{p.name}': {e.message}", e.path, e.line) from None
    return program


def state_per_param(step: Program | RoleProgram | StepFunction, task: ProxyTask, seed: int = 0) -> float:
    """Optimizer-state numbers per parameter of `task`'s model that `step` keeps (its
    `state_numel` over the model's parameter shapes, divided by their number); for a role
    candidate, each group's program over its group's shapes."""
    compiled, order = compile_candidate(step, task.param_roles())
    shapes = task.param_shapes(seed)
    params = sum(math.prod(s) for s in shapes)
    return compiled.state_numel([shapes[i] for i in order]) / params if params else 0.0


def _overall_status(statuses: list[Status]) -> Status:
    for worst in ("invalid", "error", "timeout", "diverged"):
        if worst in statuses:
            return worst  # type: ignore[return-value]
    return "ok"


def shortened(task: ProxyTask, fraction: float) -> ProxyTask:
    """`task` trained on the first `fraction` of its steps with the schedule compressed into them
    (warmup and cosine end within the fraction), or `task` itself for a fraction of 1.

    Its fitness is still measured against the full run's AdamW reference, so it sits below the
    full fitness; it compares programs with each other. The compressed schedule ends annealed, as
    the full one does: on mlp/small its first-stage fitness ranks programs with a Spearman
    correlation of 0.86 to the full one (benchmarks/cascade.py; stopping the full schedule early
    was not measured). AdamW's checkpoint curve belongs to the full schedule, so the early stop
    for hopeless copies is off.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return task
    b = task.budget
    steps = max(1, round(b.steps * fraction))
    short = copy.copy(task)
    short.budget = replace(b, steps=steps, warmup=min(steps - 1, round(b.warmup * fraction)))
    short.calibration = None
    return short


def resolve_task(spec: ProxyTask | tuple[str, str] | str, device: str | torch.device = "cpu") -> ProxyTask:
    """A task from a `ProxyTask`, a `(name, size)` pair, or `"name"` / `"name/size"`."""
    if isinstance(spec, ProxyTask):
        task = spec
    else:
        name, size = spec if isinstance(spec, tuple) else (spec.split("/") + ["small"])[:2]
        task = get_task(name, size)
    return task if task.device == torch.device(device) else task.to(device)
