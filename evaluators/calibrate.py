"""`optsearch calibrate`: tune AdamW's learning rate and weight decay on each task and store it.

AdamW runs through the same evaluator as every candidate (the zoo program, which matches
`torch.optim.AdamW` to 1e-9), for each weight decay of a grid and every learning-rate
multiplier of the fitness grid at once, over several seeds. The reference is scored exactly
as candidates are (best multiplier per seed, mean over seeds), at the best weight decay.
"""
from __future__ import annotations

import platform
import time
from dataclasses import replace
from typing import Callable, Sequence

import torch

from optsearch.discovered import load_zoo
from optsearch.dsl import Const, Program, Var
from optsearch.evaluators.fitness import DEFAULT_LR_MULTIPLIERS, best_over_lr
from optsearch.evaluators.train import train
from optsearch.proxy_tasks import Task
from optsearch.proxy_tasks.references import Reference

CALIBRATION_LR_MULTIPLIERS: tuple[float, ...] = tuple(sorted({*DEFAULT_LR_MULTIPLIERS, 0.5, 2.0}))
"""The fitness grid, finer around the budget's lr: AdamW is tuned at least as well as candidates.
(The small training tasks' stored references used (0.3, 0.5, 1, 2) around their hand-tuned lr;
each reference records its grid.)"""


def default_weight_decays(task: Task) -> tuple[float, ...]:
    """None, the budget's (hand-tuned) weight decay, and 4x it; or a generic grid if it is 0."""
    wd = task.budget.weight_decay
    return (0.0, wd, 4 * wd) if wd > 0 else (0.0, 0.1, 0.5)


def adamw_program(weight_decay: float) -> Program:
    """The zoo's AdamW (betas 0.9/0.999, eps 1e-8) with decoupled weight decay `weight_decay`.

    The decay is the constant of the statement `decay = w * c`."""
    program = load_zoo("adamw")
    body = tuple(
        replace(s, args=tuple(Const(float(weight_decay)) if isinstance(a, Const) else a for a in s.args))
        if s.op == "mul" and Var("w") in s.args else s
        for s in program.body)
    return replace(program, body=body)


def calibrate(task: Task, seeds: Sequence[int] = (0, 1, 2),
              lr_multipliers: Sequence[float] = CALIBRATION_LR_MULTIPLIERS,
              weight_decays: Sequence[float] | None = None,
              progress: Callable[[str], None] | None = None) -> Reference:
    """Tune AdamW on `task`; returns the reference (not yet saved)."""
    weight_decays = default_weight_decays(task) if weight_decays is None else weight_decays
    best: tuple[float, float, float, dict, float | None] | None = None  # metric, lr, wd, curve, initial
    scores: dict[str, float] = {}
    for wd in weight_decays:
        start = time.perf_counter()
        r = train(adamw_program(wd), task, seeds, lr_multipliers)
        per_seed, where = best_over_lr(r.metrics, len(r.seeds), len(r.lr_multipliers))
        for k, mult in enumerate(r.lr_multipliers):
            column = [r.metric(s, k) for s in range(len(r.seeds))]
            scores[f"lr={task.budget.lr * mult:.4g},wd={wd:g}"] = sum(column) / len(column)
        metric = sum(per_seed) / len(per_seed)
        # One lr for the record and the curve: the multiplier most seeds chose.
        k = max(set(where), key=where.count)
        curve = {step: sum(v[s * len(r.lr_multipliers) + k] for s in range(len(r.seeds))) / len(r.seeds)
                 for step, v in r.curve.items()}
        if progress:
            progress(f"{task.name}/{task.size} wd={wd:g}: metric {metric:.4f} "
                     f"(best lr x{r.lr_multipliers[k]:g}) in {time.perf_counter() - start:.1f}s")
        if best is None or metric < best[0]:
            best = (metric, task.budget.lr * r.lr_multipliers[k], wd, curve, r.initial_loss)
    assert best is not None, "weight_decays must not be empty"
    metric, lr, wd, curve, initial = best
    return Reference(
        metric=metric, lr=lr, weight_decay=wd, seeds=tuple(seeds), curve=curve, initial_loss=initial,
        grid={"lr_multipliers": list(lr_multipliers), "weight_decays": list(weight_decays),
              "base_lr": task.budget.lr, "scores": scores},
        versions={"python": platform.python_version(), "torch": torch.__version__,
                  "data": getattr(task, "corpus", None)},
    )
