"""Fitness: how a program's metric on a task compares with tuned AdamW's, and the aggregate.

Per task: the metric (validation loss, lower is better) of each seed at its best learning-rate
multiplier, averaged over seeds; then the relative improvement over the task's AdamW reference,
`(reference - metric) / |reference|`. So 0 means "as good as tuned AdamW", 0.05 means a 5%
lower validation loss, and a copy that diverged on every multiplier scores -inf. The
aggregate over tasks is their mean (any -inf makes it -inf): a program must work everywhere.
"""
from __future__ import annotations

import math
from typing import Sequence

DEFAULT_LR_MULTIPLIERS: tuple[float, ...] = (1 / 30, 0.1, 0.3, 1.0, 3.0)
"""Spans 1/30x to 3x AdamW's base lr: sign-based programs want lr 3-10x below AdamW's."""


def best_over_lr(metrics: Sequence[float], n_seeds: int, n_lrs: int) -> tuple[list[float], list[int]]:
    """Per seed, the lowest metric over lr multipliers and its index (metrics are seed-major)."""
    best, where = [], []
    for s in range(n_seeds):
        row = [m if math.isfinite(m) else math.inf for m in metrics[s * n_lrs:(s + 1) * n_lrs]]
        k = min(range(n_lrs), key=row.__getitem__)
        best.append(row[k])
        where.append(k)
    return best, where


def task_metric(metrics: Sequence[float], n_seeds: int, n_lrs: int) -> float:
    """Mean over seeds of the best metric over lr multipliers (inf if any seed never converged)."""
    best, _ = best_over_lr(metrics, n_seeds, n_lrs)
    return sum(best) / len(best)


def relative_fitness(metric: float, reference: float) -> float:
    """`(reference - metric) / |reference|`: higher is better, 0 = tuned AdamW, -inf = failed."""
    if not math.isfinite(metric):
        return -math.inf
    return (reference - metric) / abs(reference)


def aggregate(fitnesses: Sequence[float]) -> float:
    """Mean fitness over tasks; -inf if a task failed or there are none."""
    if not fitnesses or any(not math.isfinite(f) for f in fitnesses):
        return -math.inf
    return sum(fitnesses) / len(fitnesses)


def memory_penalized(fitness: float, state_per_param: float | None, weight: float) -> float:
    """`fitness - weight * state_per_param`: a search's score that prefers programs keeping less
    optimizer state (AdamW 2 numbers per parameter, Lion 1, Adafactor about (m + n) / (m n)).
    With `weight` 0.05, one tensor of state costs what a 5% higher validation loss does. A failed
    fitness (-inf) stays failed; unknown memory (None) is not penalised."""
    if weight < 0:
        raise ValueError(f"the memory penalty weight must be >= 0, got {weight}")
    if not math.isfinite(fitness) or state_per_param is None or weight == 0:
        return fitness
    return fitness - weight * state_per_param
