"""Train one program on one proxy task for B copies at once (seeds x learning-rate multipliers).

The B copies of the model live in one flat `(B, N)` buffer, and the compiled program updates all
of them with one kernel per statement. Their forward and backward passes run one of two ways
(`batching`): "vmap" runs them together under `torch.func.vmap`, which is what makes an
accelerator fast; "loop" runs plain autograd on each copy in turn, on views of its row of the
buffer. "auto" (the default) loops on a CPU and vmaps anywhere else: on a CPU the batched pass
does the same FLOPs one after another anyway, while torch.func's per-op wrappers, the extra
kernels of its batching rules and B-fold working sets that fall out of cache made it 1.3-1.6x
slower per copy than plain autograd on the small lm and vit tasks (benchmarks/evaluator_speed.py).
The two give the same results up to float rounding.

A copy whose loss or parameters turn NaN/inf is marked diverged; when
every copy has, training stops early; so does a run in which every copy is hopeless: at a
checkpoint (`CHECKPOINTS`, fractions of the budget) its smoothed training loss has made less than
`MIN_PROGRESS` of the progress tuned AdamW had made by then (from the task's calibration), or is
above where it started. A bad program is a result, never an exception.
"""
from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass, field
from typing import Literal, Sequence

import torch
from torch import Tensor
from torch.func import grad_and_value, vmap

from optsearch.dsl import FlatReducer, Layout, Program, ProgramError, RoleProgram, StepFunction, compile_candidate
from optsearch.proxy_tasks import ProxyTask, Task

Status = Literal["ok", "diverged", "invalid", "timeout", "error"]
Batching = Literal["auto", "vmap", "loop"]

CHECKPOINTS: tuple[float, ...] = (0.25, 0.5, 0.75)
MIN_PROGRESS = 0.1
LOSS_SMOOTHING = 0.9  # EMA of the per-step training loss, for checkpoints


@dataclass
class TrainResult:
    """What one training of B copies produced. Metrics are per copy, inf where a copy diverged."""

    status: Status
    seeds: tuple[int, ...]
    lr_multipliers: tuple[float, ...]
    metrics: list[float] = field(default_factory=list)     # validation metric per copy (seed-major)
    train_losses: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    error: str | None = None
    curve: dict[int, list[float]] = field(default_factory=dict)  # checkpoint step -> smoothed loss per copy
    initial_loss: float | None = None                          # mean training loss at step 1

    def metric(self, seed_index: int, lr_index: int) -> float:
        return self.metrics[seed_index * len(self.lr_multipliers) + lr_index]


def train(program: Program | RoleProgram | StepFunction, task: ProxyTask, seeds: Sequence[int] = (0,),
          lr_multipliers: Sequence[float] = (1.0,), time_limit: float | None = None,
          device: str | torch.device = "cpu", batching: Batching = "auto") -> TrainResult:
    """Train `program` on `task` for every (seed, lr multiplier) pair; see the module docstring.

    `batching` is how the copies' forward and backward passes run: "vmap", "loop", or "auto"
    (loop on a CPU, vmap on anything else).

    A role candidate (`RoleProgram`) steps each group of parameters (by `task.param_roles()`) with
    its own program, state and layout (`dsl.grouped`); the lr multiplier scales every group's lr.
    """
    if batching not in ("auto", "vmap", "loop"):
        raise ValueError(f"batching must be 'auto', 'vmap' or 'loop', got {batching!r}")
    seeds, mults = tuple(int(s) for s in seeds), tuple(float(m) for m in lr_multipliers)
    start = time.perf_counter()
    result = TrainResult("ok", seeds, mults)
    try:
        # a program, a role candidate, or a step function (compiled, or a transform around one)
        compiled, order = compile_candidate(program, task.param_roles())
    except ProgramError as e:
        result.status, result.error = "invalid", str(e)
        return _finish(result, start, len(seeds) * len(mults))
    try:
        device = torch.device(device)
        vmapped = batching == "vmap" or (batching == "auto" and device.type != "cpu")
        if task.kind == "imitation":
            from optsearch.evaluators.imitate import imitate  # imitate.py imports TrainResult from here
            imitate(compiled, task.to(device), seeds, mults, result, order)
        else:
            _train(compiled, order, task, seeds, mults, time_limit, device, vmapped, result, start)
    except Exception as e:  # a program can fail in ways analysis cannot see; score it, don't crash
        result.status = "error"
        result.error = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"
    return _finish(result, start, len(seeds) * len(mults))


def _finish(result: TrainResult, start: float, copies: int) -> TrainResult:
    if not result.metrics:
        result.metrics = [math.inf] * copies
        result.train_losses = [math.inf] * copies
    result.seconds = time.perf_counter() - start
    return result


def _train(compiled: StepFunction, order: tuple[int, ...], task: Task, seeds: tuple[int, ...], mults: tuple[float, ...],
           time_limit: float | None, device: torch.device, vmapped: bool, result: TrainResult,
           start: float) -> None:
    budget = task.budget
    copies = [(si, m) for si in range(len(seeds)) for m in mults]
    seed_of = torch.tensor([si for si, _ in copies], device=device)
    inits = [task.init(s) for s in seeds]
    names = [list(inits[0])[i] for i in order]  # in the flat buffer: parameter groups one after another
    stacked = [torch.stack([inits[si][n] for si, _ in copies]).to(device) for n in names]
    layout = Layout.of(stacked, batch_dims=1)
    w = layout.flatten(stacked, batch_dims=1)
    reducer = FlatReducer(layout)
    state = compiled.init_state(w, layout)
    lr_base = torch.tensor([budget.lr * m for _, m in copies], dtype=w.dtype, device=device).unsqueeze(-1)
    alive = torch.ones(len(copies), dtype=torch.bool, device=device)
    grad_fn = vmap(grad_and_value(task.loss)) if vmapped else _looped_grad(task.loss, layout, seeds, copies)
    loss = torch.full((len(copies),), math.inf)
    same_order = len(seeds) == len(copies)
    checkpoints = {max(1, round(f * budget.steps)) for f in CHECKPOINTS}
    reference = task.calibration
    smooth = None

    for step in range(1, budget.steps + 1):
        per_seed = [task.batch(s, step) for s in seeds]
        if vmapped:
            params = dict(zip(names, layout.unflatten(w)))
            batch = tuple(torch.stack(parts) for parts in zip(*per_seed))
            if not same_order:
                batch = tuple(b.index_select(0, seed_of) for b in batch)
            grads, loss = grad_fn(params, batch)
            g = layout.flatten([grads[n] for n in names], batch_dims=1)
        else:
            g, loss = grad_fn(w, per_seed, names, alive.tolist())
        lr = lr_base * budget.lr_at(step)
        update, state = compiled.step_flat(w, g, lr, step, state, reducer)
        w = w - update
        loss = loss.detach()
        alive &= torch.isfinite(loss)
        if not bool(alive.any()):
            result.status, result.error = "diverged", f"loss not finite at step {step}"
            break
        if smooth is None:
            smooth = loss.clone()
            result.initial_loss = float(loss.mean())
        else:
            smooth.mul_(LOSS_SMOOTHING).add_(loss, alpha=1 - LOSS_SMOOTHING)
        if step in checkpoints:
            result.curve[step] = [float(x) for x in smooth]
            alive &= ~_hopeless(smooth, step, reference)
            if not bool(alive.any()):
                result.status = "diverged"
                result.error = f"hopeless: less than {MIN_PROGRESS:.0%} of AdamW's progress at step {step}"
                break
        if time_limit is not None and time.perf_counter() - start > time_limit:
            result.status, result.error = "timeout", f"time limit {time_limit:g}s reached at step {step}"
            break
    result.steps = step
    alive &= torch.isfinite(w).all(-1)
    if result.status == "ok" and not bool(alive.any()):
        result.status, result.error = "diverged", "parameters not finite at the end"
    with torch.no_grad():
        if result.status != "ok":
            metric = torch.full_like(loss, math.inf)
        elif vmapped:
            metric = vmap(task.metric)(dict(zip(names, layout.unflatten(w))))
        else:  # copies that are out get inf below anyway: skip their validation pass
            metric = torch.stack([task.metric(dict(zip(names, layout.unflatten(w[c])))) if bool(alive[c])
                                  else torch.tensor(math.inf, dtype=w.dtype, device=device)
                                  for c in range(len(copies))])
    metric = torch.where(alive & torch.isfinite(metric), metric, torch.full_like(metric, math.inf))
    loss = torch.where(alive & torch.isfinite(loss), loss.detach(), torch.full_like(loss, math.inf))
    result.metrics = [float(x) for x in metric]
    result.train_losses = [float(x) for x in loss]


def _looped_grad(loss_fn, layout: Layout, seeds: tuple[int, ...], copies: list[tuple[int, float]]):
    """The "loop" batching: plain autograd through each copy in turn, gradients written into one
    `(B, N)` buffer; returns `fn(w, per_seed_batches, names, alive) -> (g, loss)`. Copies that are
    out already (diverged or hopeless) are skipped: zero gradient, infinite loss."""
    seed_index = [si for si, _ in copies]

    def grad_fn(w: Tensor, per_seed: list[tuple[Tensor, ...]], names: list[str],
                alive: list[bool]) -> tuple[Tensor, Tensor]:
        g = torch.empty_like(w)
        losses = []
        with torch.enable_grad():
            for c, si in enumerate(seed_index):
                if not alive[c]:
                    g[c] = 0.0
                    losses.append(torch.tensor(math.inf, dtype=w.dtype, device=w.device))
                    continue
                leaves = [p.detach().requires_grad_() for p in layout.unflatten(w[c])]
                loss = loss_fn(dict(zip(names, leaves)), per_seed[si])
                grads = torch.autograd.grad(loss, leaves, allow_unused=True, materialize_grads=True)
                torch.cat([x.reshape(-1) for x in grads], out=g[c])
                losses.append(loss.detach())
        return g, torch.stack(losses)

    return grad_fn


def _hopeless(smooth: Tensor, step: int, reference) -> Tensor:
    """Copies whose smoothed loss at checkpoint `step` shows no real progress (see module doc)."""
    if reference is None or reference.initial_loss is None or step not in reference.curve:
        return torch.zeros_like(smooth, dtype=torch.bool)
    start, ref = reference.initial_loss, reference.curve[step]
    return (start - smooth) < MIN_PROGRESS * (start - ref)
