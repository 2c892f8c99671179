"""The AdamW reference run: `torch.optim.AdamW` on a task's budget, in a plain loop.

It gives each task its reference score and its reference wall time (the denominator of the
speed ratios in benchmarks/). `python -m optsearch.proxy_tasks` prints a table of them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from optsearch.proxy_tasks.base import Task


@dataclass
class AdamWRun:
    """The outcome of one AdamW run: final validation metric, training losses, wall and CPU seconds.

    CPU seconds (this process's) are the steadier number on a shared machine.
    """

    metric: float
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0


def train_adamw(task: Task, seed: int = 0, lr: float | None = None, weight_decay: float | None = None,
                steps: int | None = None) -> AdamWRun:
    """Train one copy with AdamW at the budget's lr, weight decay and schedule (overridable).

    `steps` stops early (the schedule still spans the full budget).
    """
    budget = task.budget
    lr = budget.lr if lr is None else lr
    wd = budget.weight_decay if weight_decay is None else weight_decay
    steps = budget.steps if steps is None else steps
    params = {k: v.clone().requires_grad_(True) for k, v in task.init(seed).items()}
    opt = torch.optim.AdamW(params.values(), lr=lr, weight_decay=wd)
    losses = []
    start, cpu_start = time.perf_counter(), time.process_time()
    for step in range(1, steps + 1):
        for group in opt.param_groups:
            group["lr"] = lr * budget.lr_at(step)
        loss = task.loss(params, task.batch(seed, step))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        metric = float(task.metric(params))
    return AdamWRun(metric, losses, time.perf_counter() - start, time.process_time() - cpu_start)
