"""Simplification: the shortest program with the same behaviour, then with the same fitness.

Two stages make a search's raw winners readable, as the Lion paper did by hand:

1. Exact rewrites keep behaviour exactly, with no evaluation: `optsearch.dsl.rewrite`
   (`simplify_static`: dead code and state, common subexpressions, constant folding, the rule
   table of algebraic identities, each checked on the probe inputs).
2. Evaluated simplification (given tasks), here: measures fitness and its seed noise, removes
   statements one at a time (their uses read one of their arguments, every choice tried) while
   fitness stays within the noise of the original's, then rounds constants (betas in 1 - beta
   space) where it holds, with the exact rewrites after each accepted change. Evaluations are
   cached by canonical hash: no program is trained twice.
"""
from __future__ import annotations

import math
import statistics
from decimal import Decimal
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Sequence

from optsearch.dsl import Const, Program, Statement, Var, structural_hash
from optsearch.dsl.rewrite import alias, original_names, restore_names, show, simplify_static, valid
from optsearch.dsl.rules import decimal
from optsearch.evaluators import DEFAULT_LR_MULTIPLIERS, EvalResult, evaluate
from optsearch.evaluators.evaluate import seed_fitnesses
from optsearch.proxy_tasks import Task

Progress = Callable[[str], None]


@dataclass
class SimplifyResult:
    """What `simplify` did: programs, the changes in order, and fitness (None without tasks)."""

    before: Program
    after: Program
    static_steps: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    rounded: list[str] = field(default_factory=list)
    fitness_before: float | None = None
    fitness_after: float | None = None
    noise: float | None = None          # how far fitness may drop: seed std of `before`, or the tolerance
    evaluations: int = 0                # programs actually trained (cache hits not counted)


# --- evaluated simplification ---------------------------------------------------------------

class _Scorer:
    """Fitness of programs on fixed tasks and seeds, each canonical form trained once."""

    def __init__(self, tasks: Sequence[Task | tuple[str, str] | str], seeds: Sequence[int],
                 lr_multipliers: Sequence[float]):
        self.tasks, self.seeds, self.lr_multipliers = list(tasks), list(seeds), list(lr_multipliers)
        self.cache: dict[str, EvalResult] = {}
        self.evaluations = 0

    def __call__(self, p: Program) -> tuple[EvalResult, bool]:
        """(result, whether it came from the cache)."""
        h = structural_hash(p)
        cached = h in self.cache
        if not cached:
            self.cache[h] = evaluate(p, self.tasks, seeds=self.seeds, lr_multipliers=self.lr_multipliers)
            self.evaluations += 1
        return self.cache[h], cached


def seed_noise(result: EvalResult) -> float:
    """Standard deviation of fitness over seeds (0 with one seed, or when a seed failed)."""
    f = seed_fitnesses(result, len(result.scores))
    return statistics.stdev(f) if len(f) >= 2 and all(map(math.isfinite, f)) else 0.0


def _removals(p: Program) -> Iterator[tuple[Statement, str, Program]]:
    """(statement, name its uses read, program) for each statement removed with each choice of the
    variable argument its uses read instead; candidates `check` refuses are left out."""
    for i, s in enumerate(p.body):
        for x in dict.fromkeys(x.name for x in s.args if isinstance(x, Var)):
            q = alias(p, i, Var(x))
            if q is not None and valid(q):
                yield s, x, q


def rounding_candidates(c: float) -> list[float]:
    """Rounder values of `c`, roundest first: fewer significant digits, of 1 - c for betas
    (0.5 <= c < 1), so 0.9873 gives 0.99 then 0.987. Decimal arithmetic on the shortest repr,
    so 1 - 0.98999 is 0.01001 and not 0.010010000000000052."""
    if not math.isfinite(c) or c == 0:
        return []
    beta = 0.5 <= c < 1.0
    x = 1 - decimal(c) if beta else decimal(c)
    digits = len(x.normalize().as_tuple().digits)
    out: list[float] = []
    for d in range(1, digits):
        r = Decimal(f"{x:.{d}g}")
        v = float(Decimal(1) - r) if beta else float(r)
        if v != c and v not in out and (not beta or 0.5 <= v < 1.0):
            out.append(v)
    return out


def simplify(program: Program, tasks: Sequence[Task | tuple[str, str] | str] | None = None, seeds: int = 3,
             lr_multipliers: Sequence[float] = DEFAULT_LR_MULTIPLIERS, tolerance: float | None = None,
             progress: Progress | None = None, strict: bool = False) -> SimplifyResult:
    """Simplify `program`: exact rewrites; then, given `tasks`, removals and rounding that keep
    fitness within `tolerance` (default: the std of fitness over `seeds` seeds) of the original's.
    Fitness is compared on the same seeds every time, so the noise bound is a conservative one."""
    if tolerance is not None and not (tolerance >= 0 and math.isfinite(tolerance)):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    say = progress or (lambda line: None)
    names = original_names(program)
    p, steps = simplify_static(program, strict, names)
    result = SimplifyResult(program, restore_names(p, program), static_steps=steps)
    if not tasks:
        return result

    score = _Scorer(tasks, range(seeds), lr_multipliers)
    first, _ = score(program)
    result.fitness_before = first.fitness
    result.noise = tolerance if tolerance is not None else seed_noise(first)
    floor = first.fitness - result.noise
    say(f"before: fitness {first.fitness:+.4f} ({first.status}), noise {result.noise:.4f}; "
        f"removals must keep fitness >= {floor:+.4f}")
    if not math.isfinite(first.fitness):
        result.fitness_after = first.fitness
        result.evaluations = score.evaluations
        say("the program fails on these tasks: only the exact rewrites apply")
        return result

    def holds(q: Program, what: str) -> bool:
        r, cached = score(q)
        ok = r.fitness >= floor
        say(f"[{score.evaluations} evaluated] {what}: fitness {r.fitness:+.4f}{' (cached)' * cached} -> "
            f"{'kept' if ok else 'rejected'}")
        return ok

    changed = True
    while changed:  # passes until no statement can go
        changed, tried = False, set()
        while True:
            candidate = next(((s, x, q) for s, x, q in _removals(p) if (s, x) not in tried), None)
            if candidate is None:
                break
            s, x, q = candidate
            tried.add((s, x))
            what = f"line {s.line}: {show(s, names)} (its uses read {names.get(x, x)})"
            if holds(q, f"remove {what}"):
                p, more = simplify_static(q, strict, names)
                result.removed.append(what)
                result.static_steps += more
                changed = True

    done: set[tuple[str, int]] = set()
    while True:
        site = next(((i, j) for i, s in enumerate(p.body) for j, a in enumerate(s.args)
                     if isinstance(a, Const) and (s.target, j) not in done), None)
        if site is None:
            break
        i, j = site
        s = p.body[i]
        done.add((s.target, j))
        for v in rounding_candidates(s.args[j].value):
            q = replace(p, body=p.body[:i] + (replace(s, args=s.args[:j] + (Const(v),) + s.args[j + 1:]),)
                        + p.body[i + 1:])
            what = f"line {s.line}: {s.args[j].value!r} -> {v!r} in {show(s, names)}"
            if valid(q) and holds(q, f"round {what}"):
                p, more = simplify_static(q, strict, names)
                result.rounded.append(what)
                result.static_steps += more
                break

    result.after = restore_names(p, program)
    result.fitness_after = score(p)[0].fitness
    result.evaluations = score.evaluations
    say(f"after: fitness {result.fitness_after:+.4f}, {len(p.body)} statements, {score.evaluations} evaluations")
    return result


__all__ = ["SimplifyResult", "rounding_candidates", "seed_noise", "simplify"]
