"""Random search: the baseline evolution has to beat.

Programs are drawn independently (no parent, no warm start): 0-2 state variables, 2-10
statements of ops drawn from the same weighted op set, arguments drawn from the values
defined so far (or constants), the last statement is the update and each state's new value
is a random tensor statement. They go through the same screening as evolution's children
(invalid and equivalent programs cost no evaluation), so both spend the same budget on the
same kind of evaluation. With parameter roles (`settings.roles`) a drawn program steps the evolved
roles and is evaluated beside the fixed programs, as evolution's programs are.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from optsearch.dsl import INPUTS, OPS, Program, Statement, Var, print_candidate, print_program
from optsearch.dsl.roles import with_fixed_roles
from optsearch.evaluators import EvalJob, run_job
from optsearch.search.equivalence import EquivalenceCache, matches, screen_child
from optsearch.search.mutate import _Draft, _operands, _random_op, _result_type
from optsearch.search.settings import SearchSettings


def random_program(rng: random.Random, ops: dict[str, float] | None = None, max_statements: int = 10,
                   max_state: int = 2) -> Program:
    """One random program (not necessarily valid: screen it)."""
    states = [f"s{k + 1}" for k in range(rng.randint(0, max_state))]
    d = _Draft("random", ["w", "g", "lr", "step", *states], [], [], ops)
    types = {p: ("scalar" if p in ("lr", "step") else "tensor") for p in d.params}
    for k in range(rng.randint(2, max_statements)):
        op = _random_op(rng, d)
        args = _operands(rng, d, k, types, op)
        if not any(isinstance(a, Var) for a in args):  # an op over constants only is a constant
            j = rng.randrange(len(args))
            args = args[:j] + (Var(rng.choice(d.available(k))),) + args[j + 1:]
        name = f"v{k + 1}"
        types[name] = _result_type(op, args, types)
        d.body.append(Statement(name, op, args))
    tensors = [s.target for s in d.body if types[s.target] == "tensor"] or [d.body[-1].target]
    d.returns = [d.body[-1].target] + [rng.choice(tensors) for _ in states]
    params = [p for p in INPUTS if p != "step" or any(a == Var("step") for s in d.body for a in s.args)]
    return Program("random", tuple(params + states), tuple(d.body), tuple(d.returns))


@dataclass
class RandomSearchResult:
    evaluations: int
    drawn: int
    rejected: int
    cache_hits: int
    best_fitness: float
    best_program: str | None
    found_at: int | None            # evaluations until the target matched (None: not found)
    seconds: float


def random_search(settings: SearchSettings, target: Program | None = None,
                  progress: Callable[[RandomSearchResult], None] | None = None,
                  fixed: Mapping[str, Program] | None = None) -> RandomSearchResult:
    """Evaluate random programs until `settings.evaluations` evaluations or the target is found;
    with `settings.roles`, `fixed` holds the fixed programs by role (as `Evolution`'s)."""
    if (settings.roles is None) != (fixed is None):
        raise ValueError("the fixed programs go with settings.roles: give both or neither")
    rng = random.Random(settings.seed)
    e, cache, fitness = settings.evaluation, EquivalenceCache(), {}
    r = RandomSearchResult(0, 0, 0, 0, -math.inf, None, None, 0.0)
    start = time.monotonic()
    while r.evaluations < (settings.evaluations or 0) and r.found_at is None:
        program = random_program(rng, settings.ops, max_statements=min(10, settings.max_statements))
        r.drawn += 1
        program, s = screen_child(program, settings.max_statements, settings.simplify_children)
        if not s.ok:
            r.rejected += 1
            continue
        if cache.lookup(s.hash, s.fingerprint) is not None:
            r.cache_hits += 1
            continue
        text = print_program(program)
        job = text if fixed is None else print_candidate(with_fixed_roles(program, settings.roles.evolve, fixed))
        result = run_job(EvalJob(job, tuple(e.tasks), tuple(range(e.seeds)), tuple(e.lr_multipliers),
                                 e.time_limit, e.device))
        r.evaluations += 1
        cache.add(r.evaluations, s.hash, s.fingerprint)
        f = result.fitness if result.status == "ok" else -math.inf
        fitness[r.evaluations] = f
        if f > r.best_fitness:
            r.best_fitness, r.best_program = f, text
        if target is not None and result.status == "ok":
            t = settings.target
            if matches(program, target, t.rel_tol, t.abs_tol) if t else matches(program, target):
                r.found_at = r.evaluations
        if progress:
            progress(r)
    r.seconds = time.monotonic() - start
    return r


__all__ = ["RandomSearchResult", "random_program", "random_search"]
