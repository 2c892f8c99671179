"""Whether one optimizer beats another over a few seeds: paired differences and standard errors.

A report trains every contender on the same seeds, and a seed fixes the model's initialisation
and the data order, so seed k of the winner and seed k of a baseline are a pair: the difference
of their fitness on that seed removes what the seed itself contributes. The claim a report makes
is the one the issue asks for: the mean paired difference is more than two standard errors
(sample standard deviation over sqrt(seeds)) above 0. Fitness is `(reference - metric) / |reference|`
per seed, -inf where a seed failed (diverged on every learning rate, or did not finish).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

Verdict = Literal["yes", "no", "n/a"]


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds and its standard error; None where a seed failed (mean) or there is one
    seed (standard error)."""

    mean: float | None
    se: float | None


@dataclass(frozen=True)
class Comparison:
    """The winner against one baseline: per-seed differences (winner - baseline), their mean and
    standard error, and whether the mean is more than 2 standard errors above 0.

    `beats` is "n/a" where the data cannot say: one seed (no standard error), or a seed on which
    the baseline failed and the winner did not. A winner that fails on a seed does not beat."""

    differences: tuple[float | None, ...]
    mean: float | None
    se: float | None
    beats: Verdict
    why: str | None = None       # the reason for "n/a", or the seed the winner failed on


def estimate(values: Sequence[float]) -> Estimate:
    """Mean and standard error of per-seed values (the mean is None if any value is not finite)."""
    if not values or not all(math.isfinite(v) for v in values):
        return Estimate(None, None)
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return Estimate(mean, None)
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return Estimate(mean, math.sqrt(variance / n))


def paired(winner: Sequence[float], baseline: Sequence[float], seeds: Sequence[int] | None = None) -> Comparison:
    """Compare per-seed fitness of the winner and a baseline, seed by seed (`seeds` names them in
    the reasons; default 0, 1, ...)."""
    if len(winner) != len(baseline):
        raise ValueError(f"paired seeds differ in number: {len(winner)} and {len(baseline)}")
    seeds = list(range(len(winner))) if seeds is None else list(seeds)
    differences = tuple(w - b if math.isfinite(w) and math.isfinite(b) else None for w, b in zip(winner, baseline))
    failed = [k for k, w in enumerate(winner) if not math.isfinite(w)]
    if failed:
        return Comparison(differences, None, None, "no", f"it failed on seed {seeds[failed[0]]}")
    lost = [k for k, b in enumerate(baseline) if not math.isfinite(b)]
    if lost:
        return Comparison(differences, None, None, "n/a", f"the baseline failed on seed {seeds[lost[0]]}")
    e = estimate([d for d in differences if d is not None])
    if e.se is None:
        return Comparison(differences, e.mean, None, "n/a", "one seed has no standard error")
    return Comparison(differences, e.mean, e.se, "yes" if e.mean > 2 * e.se else "no")


def mean_over_tasks(per_task: Sequence[Sequence[float]]) -> list[float]:
    """Per seed, the mean fitness over tasks (-inf where any task failed on that seed), as the
    search aggregates tasks: an optimizer must work everywhere."""
    seeds = {len(t) for t in per_task}
    if len(seeds) != 1:
        raise ValueError(f"tasks were evaluated on different numbers of seeds: {sorted(seeds)}")
    out = []
    for values in zip(*per_task):
        out.append(math.fsum(values) / len(values) if all(math.isfinite(v) for v in values) else -math.inf)
    return out


__all__ = ["Comparison", "Estimate", "Verdict", "estimate", "mean_over_tasks", "paired"]
