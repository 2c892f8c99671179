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
            mults: Sequence[float], result: TrainResult) -> None:
    """Fill `result` with each copy's normalised update error (inf where it is not finite)."""
    streams = [task.stream(s) for s in seeds]
    copies = [(si, m) for si in range(len(seeds)) for m in mults]
    index = torch.tensor([si for si, _ in copies], device=task.device)
    w_all = torch.stack([s.w for s in streams]).index_select(0, index)   # (B, T, N)
    g_all = torch.stack([s.g for s in streams]).index_select(0, index)
    u_all = torch.stack([s.u for s in streams]).index_select(0, index)
    layout = Layout(streams[0].shapes, task.device)
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
