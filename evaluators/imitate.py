"""Score a program on an imitation task: run it along the target's recorded streams.

All copies (seeds x lr multipliers) run at once on a `(B, N)` buffer, one kernel per statement,
exactly as in training; only the source of `w` and `g` differs (recorded, not trained).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from optsearch.dsl import FlatReducer, Layout, StepFunction
from optsearch.evaluators.train import TrainResult
from optsearch.proxy_tasks.imitate import ImitationTask


def imitate(compiled: StepFunction, task: ImitationTask, seeds: Sequence[int],
            mults: Sequence[float], result: TrainResult, order: Sequence[int] | None = None) -> None:
    """Fill `result` with each copy's normalised update error (inf where it is not finite).

    `order` is the order of the parameters in the buffer `compiled` steps (a role candidate's
    groups one after another; default: the model's order); the streams are permuted once.
    """
    streams = [task.stream(s) for s in seeds]
    copies = [(si, m) for si in range(len(seeds)) for m in mults]
    index = torch.tensor([si for si, _ in copies], device=task.device)
    shapes = list(streams[0].shapes)
    order = list(range(len(shapes))) if order is None else list(order)
    columns = _columns(Layout(shapes), order)
    w_all = torch.stack([s.w for s in streams]).index_select(0, index)   # (B, T, N)
    g_all = torch.stack([s.g for s in streams]).index_select(0, index)
    u_all = torch.stack([s.u for s in streams]).index_select(0, index)
    if columns is not None:
        columns = columns.to(task.device)
        w_all, g_all, u_all = (x.index_select(-1, columns) for x in (w_all, g_all, u_all))
    layout = Layout([shapes[i] for i in order], task.device)
    reducer = FlatReducer(layout)
    lr = torch.tensor([task.target_lr * m for _, m in copies], device=task.device).unsqueeze(-1)
    state = compiled.init_state(w_all[:, 0], layout)
    err = torch.zeros(len(copies), device=task.device)
    for t in range(w_all.shape[1]):
        update, state = compiled.step_flat(w_all[:, t], g_all[:, t], lr, t + 1, state, reducer)
        err += (update - u_all[:, t]).square().sum(-1)
    norm = u_all.square().sum((-1, -2))
    metric = err / norm
    result.steps = w_all.shape[1]
    result.metrics = [float(x) if math.isfinite(x) else math.inf for x in metric.tolist()]
    result.train_losses = list(result.metrics)
    if not any(math.isfinite(x) for x in result.metrics):
        result.status, result.error = "diverged", "updates not finite"


def _columns(layout: Layout, order: list[int]) -> torch.Tensor | None:
    """Positions on the flat axis that put the parameters in `order`; None for the model's order."""
    if order == list(range(len(layout.shapes))):
        return None
    starts = layout.starts.tolist()
    return torch.cat([torch.arange(starts[i], starts[i] + layout.numels[i]) for i in order])
