"""Simplification: the shortest program with the same behaviour, then with the same fitness.

Raw winners of a search are bloated: dead statements, `sign(bias_correct(...))`, scalings that
cancel. Two stages make them readable, as the Lion paper did by hand:

1. Static rewrites keep behaviour exactly, with no evaluation: dead code and dead state removal,
   common subexpressions merged, constant folding, algebraic identities (`x * 1`, `--x`,
   `sign(sign(x))`, `sign(a * positive)`, `sign(bias_correct(x, beta, step))`, ...). Each rewrite
   is double-checked on the functional fingerprint (updates on fixed random inputs) before it is
   accepted; one that changes it is a bug in a rule (raised with `strict`, skipped otherwise).
   "Positive" means positive wherever the value is finite (`exp` may underflow to 0, `sqrt` of a
   negative is NaN), the usual reading of `sqrt(v) + eps > 0`.
2. Evaluated simplification (given tasks) measures fitness and its seed noise, removes statements
   one at a time (their uses read one of their arguments, every choice tried) while fitness stays
   within the noise of the original's, then rounds constants (betas in 1 - beta space) where it
   holds. Evaluations are cached by canonical hash: no program is trained twice.

Programs are edited in SSA form (`mutate.to_ssa`), where every name is one value; the result
gets its original variable names back wherever that keeps it correct.
"""
from __future__ import annotations

import math
import statistics
from decimal import Decimal
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Sequence

import torch

from optsearch.dsl import (
    OPS, Const, FlatReducer, Layout, Operand, Program, ProgramError, Statement, Var, check, compile_program,
    structural_hash,
)
from optsearch.dsl.printer import format_statement
from optsearch.evaluators import DEFAULT_LR_MULTIPLIERS, EvalResult, evaluate, relative_fitness
from optsearch.proxy_tasks import Task
from optsearch.search.mutate import to_ssa

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


class RewriteChangedBehaviour(AssertionError):
    """A static rewrite changed the fingerprint: a bug in a rule (raised with `strict=True`)."""


# --- static rewrites ------------------------------------------------------------------------

@dataclass(frozen=True)
class _Rewrite:
    """Statement `index` becomes `new`, or (with `alias`) goes away and its uses read `alias`."""

    index: int
    rule: str
    new: Statement | None = None
    alias: Operand | None = None


def _decimal(c: float) -> Decimal:
    """`c` as the decimal it prints as (its shortest repr), for exact arithmetic on constants."""
    return Decimal(repr(c))


def _const(a: Operand, value: float | None = None) -> bool:
    return isinstance(a, Const) and (value is None or a.value == value)


class _Facts:
    """Definitions and sign facts of an SSA program: which names are >= 0 and which are > 0."""

    def __init__(self, p: Program):
        self.defs = {s.target: s for s in p.body}
        states = set(p.state)
        while True:  # greatest fixed point: a state starts at 0 and stays >= 0 if its update keeps it so
            self.positive = {"lr", "step"}  # learning rates are > 0, steps count from 1
            self.nonneg = {"lr", "step"} | states
            for s in p.body:
                self._learn(s)
            kept = {st for st, r in zip(p.state, p.returns[1:]) if st in states and self.is_nonneg(Var(r))}
            if kept == states:
                break
            states = kept

    def is_positive(self, a: Operand) -> bool:
        return a.value > 0 if isinstance(a, Const) else a.name in self.positive

    def is_nonneg(self, a: Operand) -> bool:
        return a.value >= 0 if isinstance(a, Const) else a.name in self.nonneg

    def _learn(self, s: Statement) -> None:
        pos, nn = self.is_positive, self.is_nonneg
        a = s.args
        positive = nonneg = False
        if s.op in ("abs", "square", "sqrt", "relu", "norm", "rms", "abs_mean", "max_abs", "global_norm"):
            nonneg = True
            positive = s.op in ("square", "sqrt") and pos(a[0])
        elif s.op == "exp":
            positive = True
        elif s.op in ("reciprocal", "mean", "row_mean", "col_mean"):
            positive, nonneg = pos(a[0]), nn(a[0])
        elif s.op == "power":
            positive = pos(a[0])
        elif s.op == "add":
            nonneg = nn(a[0]) and nn(a[1])
            positive = nonneg and (pos(a[0]) or pos(a[1]))
        elif s.op in ("mul", "div", "minimum"):
            positive = pos(a[0]) and pos(a[1])
            nonneg = nn(a[0]) and (nn(a[1]) if s.op != "div" else pos(a[1]))
        elif s.op == "maximum":
            positive, nonneg = pos(a[0]) or pos(a[1]), nn(a[0]) or nn(a[1])
        elif s.op == "interp" and isinstance(a[2], Const) and 0 <= a[2].value <= 1:
            positive, nonneg = pos(a[0]) and pos(a[1]), nn(a[0]) and nn(a[1])
        elif s.op == "bias_correct" and _is_beta(a[1]) and pos(a[2]):
            positive, nonneg = pos(a[0]), nn(a[0])
        if positive:
            self.positive.add(s.target)
        if positive or nonneg:
            self.nonneg.add(s.target)


def _is_beta(a: Operand) -> bool:
    return isinstance(a, Const) and 0 < a.value < 1


def _fold(s: Statement) -> float | None:
    """The value of an elementwise statement over constants only (None if not finite)."""
    op = OPS[s.op]
    if op.kind != "elementwise" or not all(isinstance(a, Const) for a in s.args):
        return None
    with torch.no_grad():
        value = float(op.impl(*(torch.tensor(a.value, dtype=torch.float64) for a in s.args)))
    return value if math.isfinite(value) else None


def _bias_scale(beta: Operand, step: Operand) -> float | None:
    """`1 / (1 - beta ** step)` for constants where it is a finite real number, else None."""
    if not (_const(beta) and _const(step)):
        return None
    try:
        scale = 1 / (1 - beta.value ** step.value)
    except (ZeroDivisionError, OverflowError):
        return None
    return scale if isinstance(scale, float) and math.isfinite(scale) else None


def _rules(p: Program, i: int, facts: _Facts, seen: dict[tuple, str]) -> Iterator[_Rewrite]:
    """Rewrites of statement `i` that keep the program's behaviour exactly, most useful first."""
    s = p.body[i]
    a = s.args
    inner = [facts.defs.get(x.name) if isinstance(x, Var) else None for x in a]

    key = (s.op, tuple(sorted(a, key=repr)) if OPS[s.op].commutative else a)
    if key in seen:
        yield _Rewrite(i, "common subexpression", alias=Var(seen[key]))
    value = _fold(s)
    if value is not None:
        yield _Rewrite(i, "constant folding", alias=Const(value))
    op = s.op
    if op == "mul":
        for k in (0, 1):
            if _const(a[k], 1.0):
                yield _Rewrite(i, "x * 1 = x", alias=a[1 - k])
            if _const(a[k], -1.0):
                yield _Rewrite(i, "x * -1 = -x", new=replace(s, op="neg", args=(a[1 - k],)))
            # (x * c1) * c2 = x * (c1 c2): equal up to one rounding, which the fingerprint tolerates
            d = inner[1 - k]
            if isinstance(a[k], Const) and d is not None and d.op == "mul" and any(map(_const, d.args)):
                c = next(x for x in d.args if isinstance(x, Const))
                x = next((y for y in d.args if y is not c), d.args[1])
                yield _Rewrite(i, "(x * c1) * c2 = x * (c1 c2)", new=replace(s, args=(x, Const(c.value * a[k].value))))
    if op == "add":
        for k in (0, 1):
            if _const(a[k], 0.0):
                yield _Rewrite(i, "x + 0 = x", alias=a[1 - k])
        for k in (0, 1):
            if inner[k] is not None and inner[k].op == "neg":
                yield _Rewrite(i, "x + -y = x - y", new=replace(s, op="sub", args=(a[1 - k], inner[k].args[0])))
    if op == "sub":
        if _const(a[1], 0.0):
            yield _Rewrite(i, "x - 0 = x", alias=a[0])
        if _const(a[0], 0.0):
            yield _Rewrite(i, "0 - x = -x", new=replace(s, op="neg", args=(a[1],)))
        if inner[1] is not None and inner[1].op == "neg":
            yield _Rewrite(i, "x - -y = x + y", new=replace(s, op="add", args=(a[0], inner[1].args[0])))
    if op == "div":
        if _const(a[1], 1.0):
            yield _Rewrite(i, "x / 1 = x", alias=a[0])
        if _const(a[1], -1.0):
            yield _Rewrite(i, "x / -1 = -x", new=replace(s, op="neg", args=(a[0],)))
    if op == "power" and _const(a[1], 1.0):
        yield _Rewrite(i, "x ** 1 = x", alias=a[0])
    if op == "neg" and inner[0] is not None and inner[0].op == "neg":
        yield _Rewrite(i, "-(-x) = x", alias=inner[0].args[0])
    if OPS[op].idempotent and inner[0] is not None and inner[0].op == op:
        yield _Rewrite(i, f"{op}({op}(x)) = {op}(x)", alias=a[0])
    if op in ("abs", "relu") and facts.is_nonneg(a[0]):
        yield _Rewrite(i, f"{op}(x) = x for x >= 0", alias=a[0])
    if op == "abs" and inner[0] is not None and inner[0].op == "neg":
        yield _Rewrite(i, "abs(-x) = abs(x)", new=replace(s, args=inner[0].args))
    if op in ("maximum", "minimum") and a[0] == a[1]:
        yield _Rewrite(i, f"{op}(x, x) = x", alias=a[0])
    if op == "interp":
        if a[0] == a[1]:
            yield _Rewrite(i, "interp(x, x, a) = x", alias=a[0])
        if _const(a[2], 0.0):
            yield _Rewrite(i, "interp(x, y, 0) = x", alias=a[0])
        if _const(a[2], 1.0):
            yield _Rewrite(i, "interp(x, y, 1) = y", alias=a[1])
        if _const(a[0], 0.0) and _const(a[2]):
            yield _Rewrite(i, "interp(0, y, b) = y * b", new=replace(s, op="mul", args=(a[1], a[2])))
        if _const(a[1], 0.0) and _const(a[2]):
            keep = float(1 - _decimal(a[2].value))
            yield _Rewrite(i, "interp(x, 0, b) = x * (1 - b)", new=replace(s, op="mul", args=(a[0], Const(keep))))
        # Two moving averages toward the same value are one: (1 - b)((1 - a) x + a y) + b y.
        d = inner[0]
        if d is not None and d.op == "interp" and d.args[1] == a[1] and _const(a[2]) and _const(d.args[2]):
            x, y = _decimal(d.args[2].value), _decimal(a[2].value)
            beta = float(x + y - x * y)  # in decimal: 0.9 and 0.9 give 0.99, not 0.9900000000000001
            yield _Rewrite(i, "interp(interp(x, y, a), y, b) = interp(x, y, a + b - ab)",
                           new=replace(s, args=(d.args[0], a[1], Const(beta))))
        d = inner[1]
        if d is not None and d.op == "interp" and d.args[0] == a[0] and _const(a[2]) and _const(d.args[2]):
            yield _Rewrite(i, "interp(x, interp(x, y, a), b) = interp(x, y, ab)",
                           new=replace(s, args=(a[0], d.args[1],
                                                Const(float(_decimal(d.args[2].value) * _decimal(a[2].value))))))
    if op == "sqrt" and inner[0] is not None and inner[0].op == "square":
        yield _Rewrite(i, "sqrt(square(x)) = abs(x)", new=replace(s, op="abs", args=inner[0].args))
    if op == "bias_correct" and (scale := _bias_scale(a[1], a[2])) is not None:
        yield _Rewrite(i, "bias_correct(x, c1, c2) = x * (1 / (1 - c1 ** c2))",
                       new=replace(s, op="mul", args=(a[0], Const(scale))))
    if op == "sign" and inner[0] is not None:
        d = inner[0]
        if d.op == "mul":
            for k in (0, 1):
                if facts.is_positive(d.args[k]):
                    yield _Rewrite(i, "sign(x * c) = sign(x) for c > 0", new=replace(s, args=(d.args[1 - k],)))
                    break
        if d.op == "div" and facts.is_positive(d.args[1]):
            yield _Rewrite(i, "sign(x / c) = sign(x) for c > 0", new=replace(s, args=(d.args[0],)))
        if d.op == "bias_correct" and _is_beta(d.args[1]) and facts.is_positive(d.args[2]):
            yield _Rewrite(i, "sign(bias_correct(x, beta, step)) = sign(x)", new=replace(s, args=(d.args[0],)))


def _apply(p: Program, r: _Rewrite) -> Program | None:
    """`p` with rewrite `r` applied (SSA: a name is one value, so substitution is global)."""
    if r.new is not None:
        body = p.body[:r.index] + (r.new,) + p.body[r.index + 1:]
        return replace(p, body=body)
    return _alias(p, r.index, r.alias)


def _alias(p: Program, i: int, to: Operand) -> Program | None:
    """Statement `i` removed, its uses reading `to` instead; None if a return would read a constant."""
    target = p.body[i].target
    if isinstance(to, Const) and target in p.returns:
        return None
    body = tuple(replace(s, args=tuple(to if isinstance(x, Var) and x.name == target else x for x in s.args))
                 for k, s in enumerate(p.body) if k != i)
    returns = tuple(to.name if r == target else r for r in p.returns) if isinstance(to, Var) else p.returns
    return replace(p, body=body, returns=returns)


def _frozen_state(p: Program, names: dict[str, str]) -> tuple[Program, list[str]]:
    """State carried unchanged (`return ..., s` for state `s`) stays at its initial 0: its reads
    become the constant 0 wherever an argument may be a number (then it is dead state)."""
    frozen = {st for st, r in zip(p.state, p.returns[1:]) if st == r}
    steps, body = [], []
    for s in p.body:
        spec = OPS[s.op].types()
        args = tuple(Const(0.0) if isinstance(a, Var) and a.name in frozen and spec[k] == "any" else a
                     for k, a in enumerate(s.args))
        if args != s.args and any(isinstance(a, Var) for a in args):
            steps.append(f"line {s.line}: state that is never updated is 0 ({_show(s, names)})")
            s = replace(s, args=args)
        body.append(s)
    return replace(p, body=tuple(body)), steps


def _twin_state(p: Program) -> tuple[Program, list[str]]:
    """State variables that are returned as the same value are always equal (every state starts at
    0): each reads the first of its twins instead, and is then dead state."""
    first: dict[str, str] = {}   # returned value -> the first state that becomes it
    twin: dict[str, str] = {}    # a later state -> that first state
    for st, r in zip(p.state, p.returns[1:]):
        if r != st and first.setdefault(r, st) != st:
            twin[st] = first[r]
    if not twin:
        return p, []
    body = tuple(replace(s, args=tuple(Var(twin[a.name]) if isinstance(a, Var) and a.name in twin else a
                                       for a in s.args)) for s in p.body)
    returns = tuple(twin.get(r, r) if k == 0 else r for k, r in enumerate(p.returns))
    steps = [f"state {st!r} is always equal to {to!r}: merged" for st, to in twin.items()]
    return replace(p, body=body, returns=returns), steps


def _remove_dead(p: Program, names: dict[str, str]) -> tuple[Program, list[str]]:
    """Dead statements, state that never reaches the update, and an unread `step`, removed."""
    a = check(p)
    steps = [f"line {p.body[i].line}: dead code ({_show(p.body[i], names)})" for i in a.dead]
    body = tuple(s for k, s in enumerate(p.body) if k in a.live)
    dead_state = [s for s in p.state if s not in a.live_state]
    steps += [f"state {s!r} never reaches the update: removed" for s in dead_state]
    keep = [k for k, s in enumerate(p.state) if s not in dead_state]
    returns = (p.returns[0],) + tuple(p.returns[1 + k] for k in keep)
    params = tuple(x for x in p.params if x not in dead_state)
    if "step" in params and not any(isinstance(x, Var) and x.name == "step" for s in body for x in s.args):
        params = tuple(x for x in params if x != "step")
        steps.append("input 'step' is not read: removed")
    return replace(p, params=params, body=body, returns=returns), steps


class _Probe:
    """Fixed random inputs the rewrites are checked on: `equivalence.fingerprint`'s idea, with the
    layout passed to `init_state` so that programs with row / col state (Adafactor) run too."""

    SHAPES = (torch.Size([6]), torch.Size([4, 5]))
    LRS = (1e-2, 3e-3)
    STEPS = 5

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(20230213)
        self.layout = Layout(self.SHAPES)
        n, b = self.layout.numel, len(self.LRS)
        self.w = torch.randn(b, n, generator=gen, dtype=torch.float64)
        scales = torch.logspace(-3, 1, n, dtype=torch.float64)  # scale-sensitive programs differ
        self.g = [torch.randn(b, n, generator=gen, dtype=torch.float64) * scales[torch.randperm(n, generator=gen)]
                  for _ in range(self.STEPS)]
        self.lr = torch.tensor(self.LRS, dtype=torch.float64).unsqueeze(-1)
        self.reducer = FlatReducer(self.layout)

    def updates(self, program: Program) -> torch.Tensor:
        compiled = compile_program(program)
        w, state, out = self.w.clone(), compiled.init_state(self.w, self.layout), []
        with torch.no_grad():
            for t, g in enumerate(self.g, start=1):
                update, state = compiled.step_flat(w, g, self.lr, t, state, self.reducer)
                out.append(update)
                w = w - update
        return torch.stack(out)


_PROBE: _Probe | None = None


def _behaviour(p: Program) -> torch.Tensor | None:
    """`p`'s updates on the probe inputs; None if it cannot run on them."""
    global _PROBE
    _PROBE = _PROBE or _Probe()
    try:
        return _PROBE.updates(p)
    except Exception:  # an op that cannot run on these inputs
        return None


def _same_behaviour(reference: torch.Tensor | None, p: Program) -> bool:
    u = _behaviour(p)
    if reference is None or u is None:
        return False
    return u.shape == reference.shape and bool(torch.allclose(u, reference, rtol=1e-9, atol=0.0, equal_nan=True))


def simplify_static(program: Program, strict: bool = False,
                    names: dict[str, str] | None = None) -> tuple[Program, list[str]]:
    """`program` rewritten to a fixed point by exact rewrites; returns (SSA program, steps taken).

    Every rewrite is checked on the fingerprint; with `strict`, one that changes it raises
    `RewriteChangedBehaviour` (tests), otherwise it is skipped. Steps show statements with the
    SSA names mapped through `names` (default: back to `program`'s own names).
    """
    check(program)
    p = to_ssa(program)
    names = names if names is not None else _original_names(program)
    reference = _behaviour(p)
    steps: list[str] = []
    rejected: set[tuple[Statement, str]] = set()
    while True:
        q, frozen = _frozen_state(p, names)
        if frozen and (_same_behaviour(reference, q) or _fail(strict, "frozen state", q)):
            p, steps = q, steps + frozen
        q, twins = _twin_state(p)
        if twins and (_same_behaviour(reference, q) or _fail(strict, "twin state", q)):
            p, steps = q, steps + twins
        q, dead = _remove_dead(p, names)
        if dead and (_same_behaviour(reference, q) or _fail(strict, "dead code removal", q)):
            p, steps = q, steps + dead
        facts, seen, applied = _Facts(p), {}, False
        for i, s in enumerate(p.body):
            for r in _rules(p, i, facts, seen):
                if (s, r.rule) in rejected:
                    continue
                q = _apply(p, r)
                if q is None or not _valid(q):
                    rejected.add((s, r.rule))
                    continue
                if not _same_behaviour(reference, q):
                    _fail(strict, r.rule, q)
                    rejected.add((s, r.rule))
                    continue
                after = f" -> {_show(r.new, names)}" if r.new else ""
                steps.append(f"line {s.line}: {r.rule} ({_show(s, names)}{after})")
                p, applied = q, True
                break
            if applied:
                break
            key = (s.op, tuple(sorted(s.args, key=repr)) if OPS[s.op].commutative else s.args)
            seen.setdefault(key, s.target)
        if not applied:
            return p, steps


def _original_names(original: Program) -> dict[str, str]:
    """SSA statement target -> the name it has in `original`."""
    return {t.target: o.target for t, o in zip(to_ssa(original).body, original.body)}


def _show(s: Statement, names: dict[str, str]) -> str:
    """A statement as the user wrote it: SSA names mapped back to the original ones."""
    args = tuple(Var(names.get(x.name, x.name)) if isinstance(x, Var) else x for x in s.args)
    return format_statement(replace(s, target=names.get(s.target, s.target), args=args))


def _valid(p: Program) -> bool:
    try:
        check(p)
    except ProgramError:
        return False
    return True


def _fail(strict: bool, rule: str, p: Program) -> bool:
    if strict:
        raise RewriteChangedBehaviour(f"rewrite {rule!r} changed the fingerprint of:\n{p}")
    return False


def restore_names(ssa: Program, original: Program) -> Program:
    """The SSA program with each statement named as in `original` wherever no value still needed
    is overwritten (SSA statement targets are `original`'s, or fresh names for reassignments)."""
    preferred = _original_names(original)
    name = {x: x for x in ssa.params}
    holder = {x: x for x in ssa.params}  # actual name -> the SSA value it holds now
    body = []
    for i, s in enumerate(ssa.body):
        later = {x.name for t in ssa.body[i + 1:] for x in t.args if isinstance(x, Var)} | set(ssa.returns)
        args = tuple(Var(name[x.name]) if isinstance(x, Var) else x for x in s.args)
        want = preferred.get(s.target, s.target)
        held = holder.get(want)
        target = want if held is None or held not in later else s.target
        name[s.target], holder[target] = target, s.target
        body.append(replace(s, target=target, args=args))
    renamed = replace(ssa, body=tuple(body), returns=tuple(name[r] for r in ssa.returns))
    # the renaming is careful, but a wrong one must never escape
    return renamed if _valid(renamed) and _same_behaviour(_behaviour(ssa), renamed) else ssa


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


def seed_fitnesses(result: EvalResult) -> list[float]:
    """Fitness of each seed alone (its best metric over lrs against each task's reference, averaged
    over tasks): the spread of these is the seed noise."""
    if not result.scores or any(s.reference is None or len(s.per_seed) != len(result.scores[0].per_seed)
                                for s in result.scores):
        return []
    per_task = [[relative_fitness(m, s.reference) for m in s.per_seed] for s in result.scores]
    return [sum(f) / len(f) for f in zip(*per_task)]


def seed_noise(result: EvalResult) -> float:
    """Standard deviation of fitness over seeds (0 with one seed, or when a seed failed)."""
    f = seed_fitnesses(result)
    return statistics.stdev(f) if len(f) >= 2 and all(map(math.isfinite, f)) else 0.0


def _removals(p: Program) -> Iterator[tuple[Statement, str, Program]]:
    """(statement, name its uses read, program) for each statement removed with each choice of the
    variable argument its uses read instead; candidates `check` refuses are left out."""
    for i, s in enumerate(p.body):
        for x in dict.fromkeys(x.name for x in s.args if isinstance(x, Var)):
            q = _alias(p, i, Var(x))
            if q is not None and _valid(q):
                yield s, x, q


def rounding_candidates(c: float) -> list[float]:
    """Rounder values of `c`, roundest first: fewer significant digits, of 1 - c for betas
    (0.5 <= c < 1), so 0.9873 gives 0.99 then 0.987. Decimal arithmetic on the shortest repr,
    so 1 - 0.98999 is 0.01001 and not 0.010010000000000052."""
    if not math.isfinite(c) or c == 0:
        return []
    beta = 0.5 <= c < 1.0
    x = 1 - _decimal(c) if beta else _decimal(c)
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
    names = _original_names(program)
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
            what = f"line {s.line}: {_show(s, names)} (its uses read {names.get(x, x)})"
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
            what = f"line {s.line}: {s.args[j].value!r} -> {v!r} in {_show(s, names)}"
            if _valid(q) and holds(q, f"round {what}"):
                p, more = simplify_static(q, strict, names)
                result.rounded.append(what)
                result.static_steps += more
                break

    result.after = restore_names(p, program)
    result.fitness_after = score(p)[0].fitness
    result.evaluations = score.evaluations
    say(f"after: fitness {result.fitness_after:+.4f}, {len(p.body)} statements, {score.evaluations} evaluations")
    return result


__all__ = ["RewriteChangedBehaviour", "SimplifyResult", "restore_names", "rounding_candidates", "seed_fitnesses",
           "seed_noise", "simplify", "simplify_static"]
