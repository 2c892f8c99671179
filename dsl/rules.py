"""The exact rewrite rules: a table of small named rules, each with its side conditions.

A rule looks at one statement of an SSA program (a `Site`: the statement, the statements that
define its arguments, the sign facts of the program) and proposes what the statement becomes: a
new statement, or an operand its uses read instead (the statement then goes away). Rules only
propose; the engine (`optsearch.dsl.rewrite`) applies the first proposal that keeps the program
valid and its updates on the probe inputs unchanged, and repeats to a fixed point. Rules are
tried in table order, so the most useful come first.

Sign facts come from the op registry (`Op.sign`): a rule never lists which ops are positive.
Adding a rule is one `@rule` function here; adding an op never touches this file.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Callable, Iterator, Union

import torch

from optsearch.dsl.ir import Const, Operand, Program, Statement, Var
from optsearch.dsl.ops import OPS, Sign, ns_steps

Proposal = Union[Statement, Operand]
"""What a statement becomes: a new statement, or an operand its uses read instead."""


def decimal(c: float) -> Decimal:
    """`c` as the decimal it prints as (its shortest repr), for exact arithmetic on constants."""
    return Decimal(repr(c))


class Facts:
    """Definitions and sign facts of an SSA program: what is known of each name's sign."""

    def __init__(self, p: Program):
        self.defs = {s.target: s for s in p.body}
        states = set(p.state)
        while True:  # greatest fixed point: a state starts at 0 and stays >= 0 if its update keeps it so
            self.signs: dict[str, Sign] = {"lr": "positive", "step": "positive"}  # lr > 0, steps count from 1
            self.signs.update({s: "nonneg" for s in states})
            for s in p.body:
                self._learn(s)
            kept = {st for st, r in zip(p.state, p.returns[1:]) if st in states and self.is_nonneg(Var(r))}
            if kept == states:
                break
            states = kept

    def sign(self, a: Operand) -> Sign:
        if isinstance(a, Const):
            return "positive" if a.value > 0 else "nonneg" if a.value >= 0 else None
        return self.signs.get(a.name)

    def is_positive(self, a: Operand) -> bool:
        return self.sign(a) == "positive"

    def is_nonneg(self, a: Operand) -> bool:
        return self.sign(a) is not None

    def _learn(self, s: Statement) -> None:
        values = tuple(a.value if isinstance(a, Const) else None for a in s.args)
        new = OPS[s.op].result_sign([self.sign(a) for a in s.args], values)
        if new == "positive" or (new == "nonneg" and self.signs.get(s.target) != "positive"):
            self.signs[s.target] = new


@dataclass(frozen=True)
class Site:
    """One statement of an SSA program, as a rule sees it."""

    program: Program
    index: int
    facts: Facts
    seen: dict[tuple, str]  # (op, args) of the statements before this one -> the name that holds it

    @property
    def statement(self) -> Statement:
        return self.program.body[self.index]

    @property
    def args(self) -> tuple[Operand, ...]:
        return self.statement.args

    def inner(self, k: int) -> Statement | None:
        """The statement defining argument `k`, if it is a variable defined in the body."""
        a = self.args[k]
        return self.facts.defs.get(a.name) if isinstance(a, Var) else None

    def becomes(self, op: str, *args: Operand) -> Statement:
        return replace(self.statement, op=op, args=args)


@dataclass(frozen=True)
class Rule:
    """A named rewrite: `fire` yields what the statement may become. `{op}` in the name stands for
    the statement's op; `ops` are the ops it applies to (None: every op)."""

    name: str
    ops: frozenset[str] | None
    fire: Callable[[Site], Iterator[Proposal]]


RULES: list[Rule] = []


def rule(name: str, *ops: str) -> Callable[[Callable[[Site], Iterator[Proposal]]], Rule]:
    """Register the decorated function as the next rule of the table."""
    def register(fire: Callable[[Site], Iterator[Proposal]]) -> Rule:
        r = Rule(name, frozenset(ops) if ops else None, fire)
        RULES.append(r)
        return r
    return register


def key(s: Statement) -> tuple:
    """What makes two statements compute the same value (commutative arguments in any order)."""
    return (s.op, tuple(sorted(s.args, key=repr)) if OPS[s.op].commutative else s.args)


def _const(a: Operand, value: float | None = None) -> bool:
    return isinstance(a, Const) and (value is None or a.value == value)


def _is_beta(a: Operand) -> bool:
    return isinstance(a, Const) and 0 < a.value < 1


# --- any op --------------------------------------------------------------------------------------

@rule("common subexpression")
def _common_subexpression(site: Site):
    if key(site.statement) in site.seen:
        yield Var(site.seen[key(site.statement)])


@rule("constant folding")
def _constant_folding(site: Site):
    """An elementwise statement over constants only is its value (when that is finite)."""
    op = OPS[site.statement.op]
    if not op.elementwise or not all(isinstance(a, Const) for a in site.args):
        return
    with torch.no_grad():
        value = float(op.impl(*(torch.tensor(a.value, dtype=torch.float64) for a in site.args)))
    if math.isfinite(value):
        yield Const(value)


# --- arithmetic ----------------------------------------------------------------------------------

@rule("x * 1 = x", "mul")
def _times_one(site: Site):
    for k in (0, 1):
        if _const(site.args[k], 1.0):
            yield site.args[1 - k]


@rule("x * -1 = -x", "mul")
def _times_minus_one(site: Site):
    for k in (0, 1):
        if _const(site.args[k], -1.0):
            yield site.becomes("neg", site.args[1 - k])


@rule("(x * c1) * c2 = x * (c1 c2)", "mul")
def _scalings_compose(site: Site):
    """Equal up to one rounding, which the probe's tolerance allows."""
    for k in (0, 1):
        d = site.inner(1 - k)
        if isinstance(site.args[k], Const) and d is not None and d.op == "mul" and any(map(_const, d.args)):
            c = next(x for x in d.args if isinstance(x, Const))
            x = next((y for y in d.args if y is not c), d.args[1])
            yield replace(site.statement, args=(x, Const(c.value * site.args[k].value)))


@rule("x + 0 = x", "add")
def _plus_zero(site: Site):
    for k in (0, 1):
        if _const(site.args[k], 0.0):
            yield site.args[1 - k]


@rule("x + -y = x - y", "add")
def _plus_negated(site: Site):
    for k in (0, 1):
        d = site.inner(k)
        if d is not None and d.op == "neg":
            yield site.becomes("sub", site.args[1 - k], d.args[0])


@rule("x - 0 = x", "sub")
def _minus_zero(site: Site):
    if _const(site.args[1], 0.0):
        yield site.args[0]


@rule("0 - x = -x", "sub")
def _zero_minus(site: Site):
    if _const(site.args[0], 0.0):
        yield site.becomes("neg", site.args[1])


@rule("x - -y = x + y", "sub")
def _minus_negated(site: Site):
    d = site.inner(1)
    if d is not None and d.op == "neg":
        yield site.becomes("add", site.args[0], d.args[0])


@rule("x / 1 = x", "div")
def _over_one(site: Site):
    if _const(site.args[1], 1.0):
        yield site.args[0]


@rule("x / -1 = -x", "div")
def _over_minus_one(site: Site):
    if _const(site.args[1], -1.0):
        yield site.becomes("neg", site.args[0])


@rule("x ** 1 = x", "power")
def _power_one(site: Site):
    if _const(site.args[1], 1.0):
        yield site.args[0]


@rule("-(-x) = x", "neg")
def _double_negation(site: Site):
    d = site.inner(0)
    if d is not None and d.op == "neg":
        yield d.args[0]


# --- elementwise functions -----------------------------------------------------------------------

@rule("{op}({op}(x)) = {op}(x)")
def _idempotent(site: Site):
    d = site.inner(0)
    if OPS[site.statement.op].idempotent and d is not None and d.op == site.statement.op:
        yield site.args[0]


@rule("{op}(x) = x for x >= 0", "abs", "relu")
def _identity_on_nonneg(site: Site):
    if site.facts.is_nonneg(site.args[0]):
        yield site.args[0]


@rule("abs(-x) = abs(x)", "abs")
def _abs_of_negation(site: Site):
    d = site.inner(0)
    if d is not None and d.op == "neg":
        yield replace(site.statement, args=d.args)


@rule("{op}(x, x) = x", "maximum", "minimum")
def _extremum_of_equals(site: Site):
    if site.args[0] == site.args[1]:
        yield site.args[0]


# --- interpolation (moving averages) -------------------------------------------------------------

@rule("interp(x, x, a) = x", "interp")
def _interp_of_equals(site: Site):
    if site.args[0] == site.args[1]:
        yield site.args[0]


@rule("interp(x, y, 0) = x", "interp")
def _interp_zero(site: Site):
    if _const(site.args[2], 0.0):
        yield site.args[0]


@rule("interp(x, y, 1) = y", "interp")
def _interp_one(site: Site):
    if _const(site.args[2], 1.0):
        yield site.args[1]


@rule("interp(0, y, b) = y * b", "interp")
def _interp_from_zero(site: Site):
    x, y, b = site.args
    if _const(x, 0.0) and _const(b):
        yield site.becomes("mul", y, b)


@rule("interp(x, 0, b) = x * (1 - b)", "interp")
def _interp_to_zero(site: Site):
    x, y, b = site.args
    if _const(y, 0.0) and _const(b):
        yield site.becomes("mul", x, Const(float(1 - decimal(b.value))))


@rule("interp(interp(x, y, a), y, b) = interp(x, y, a + b - ab)", "interp")
def _averages_toward_one_value(site: Site):
    """Two moving averages toward the same value are one: (1 - b)((1 - a) x + a y) + b y."""
    d, (_, y, b) = site.inner(0), site.args
    if d is not None and d.op == "interp" and d.args[1] == y and _const(b) and _const(d.args[2]):
        p, q = decimal(d.args[2].value), decimal(b.value)
        beta = float(p + q - p * q)  # in decimal: 0.9 and 0.9 give 0.99, not 0.9900000000000001
        yield replace(site.statement, args=(d.args[0], y, Const(beta)))


@rule("interp(x, interp(x, y, a), b) = interp(x, y, ab)", "interp")
def _averages_from_one_value(site: Site):
    d, (x, _, b) = site.inner(1), site.args
    if d is not None and d.op == "interp" and d.args[0] == x and _const(b) and _const(d.args[2]):
        yield replace(site.statement, args=(x, d.args[1], Const(float(decimal(d.args[2].value) * decimal(b.value)))))


# --- roots, bias correction, signs ---------------------------------------------------------------

@rule("sqrt(square(x)) = abs(x)", "sqrt")
def _root_of_square(site: Site):
    d = site.inner(0)
    if d is not None and d.op == "square":
        yield site.becomes("abs", *d.args)


@rule("bias_correct(x, c1, c2) = x * (1 / (1 - c1 ** c2))", "bias_correct")
def _bias_correction_of_constants(site: Site):
    x, beta, step = site.args
    if not (_const(beta) and _const(step)):
        return
    try:
        scale = 1 / (1 - beta.value ** step.value)
    except (ZeroDivisionError, OverflowError):
        return
    if isinstance(scale, float) and math.isfinite(scale):  # a negative base to a fractional power is complex
        yield site.becomes("mul", x, Const(scale))


@rule("sign(x * c) = sign(x) for c > 0", "sign")
def _sign_of_positive_scaling(site: Site):
    d = site.inner(0)
    if d is not None and d.op == "mul":
        k = next((k for k in (0, 1) if site.facts.is_positive(d.args[k])), None)
        if k is not None:
            yield replace(site.statement, args=(d.args[1 - k],))


@rule("sign(x / c) = sign(x) for c > 0", "sign")
def _sign_of_positive_division(site: Site):
    d = site.inner(0)
    if d is not None and d.op == "div" and site.facts.is_positive(d.args[1]):
        yield replace(site.statement, args=(d.args[0],))


@rule("sign(bias_correct(x, beta, step)) = sign(x)", "sign")
def _sign_of_bias_correction(site: Site):
    d = site.inner(0)
    if d is not None and d.op == "bias_correct" and _is_beta(d.args[1]) and site.facts.is_positive(d.args[2]):
        yield replace(site.statement, args=(d.args[0],))


# --- matrix ops ----------------------------------------------------------------------------------
# `orthogonalize` divides its argument by max(|x|_F, eps) first, so a positive scalar factor of x
# (one number per parameter: a constant, lr, a reduction) cancels exactly, up to one rounding, when
# eps is 0. With eps > 0 it cancels only while neither |x|_F nor |c x|_F is below eps, which no
# static fact says (and fixed probe inputs of ordinary size would not show), so the rules do not
# fire then. An eps below 0 clamps like 0 (a norm is never negative), and `steps` means its rounded,
# clamped value: both are rewritten to the value they act as, so that equal programs print alike.
# `rows` and `cols` read only the shape, and every tensor of a program has w's.


def _is_scalar(site: Site, a: Operand) -> bool:
    """Whether `a` is one number per parameter (a constant, lr, step, or a value made of scalars only)."""
    if isinstance(a, Const) or a.name in ("lr", "step"):
        return True
    d = site.facts.defs.get(a.name)
    if d is None:
        return False
    op = OPS[d.op]
    if op.kind != "elementwise":
        return op.result_type == "scalar"
    return all(_is_scalar(site, x) for x in d.args)


def _eps_zero(site: Site) -> bool:
    return _const(site.args[5], 0.0)


@rule("orthogonalize(x * c) = orthogonalize(x) for a scalar c > 0, eps 0", "orthogonalize")
def _orthogonalize_of_positive_scaling(site: Site):
    d = site.inner(0)
    if _eps_zero(site) and d is not None and d.op == "mul":
        for k in (0, 1):
            c = d.args[k]
            if site.facts.is_positive(c) and _is_scalar(site, c):
                yield replace(site.statement, args=(d.args[1 - k], *site.args[1:]))


@rule("orthogonalize(x / c) = orthogonalize(x) for a scalar c > 0, eps 0", "orthogonalize")
def _orthogonalize_of_positive_division(site: Site):
    d = site.inner(0)
    if _eps_zero(site) and d is not None and d.op == "div":
        c = d.args[1]
        if site.facts.is_positive(c) and _is_scalar(site, c):
            yield replace(site.statement, args=(d.args[0], *site.args[1:]))


@rule("orthogonalize's eps < 0 acts as 0", "orthogonalize")
def _orthogonalize_negative_eps(site: Site):
    eps = site.args[5]
    if isinstance(eps, Const) and eps.value < 0:
        yield replace(site.statement, args=(*site.args[:5], Const(0.0)))


@rule("orthogonalize's steps are rounded and clamped to 1..10", "orthogonalize")
def _orthogonalize_whole_steps(site: Site):
    steps = site.args[4]
    if isinstance(steps, Const) and float(ns_steps(steps.value)) != steps.value:
        yield replace(site.statement, args=(*site.args[:4], Const(float(ns_steps(steps.value))), site.args[5]))


@rule("{op}(x) = {op}(w)", "rows", "cols")
def _shape_of_w(site: Site):
    if site.args[0] != Var("w") and "w" in site.program.params:
        yield replace(site.statement, args=(Var("w"),))


def proposals(site: Site, rules: list[Rule] | tuple[Rule, ...] = ()) -> Iterator[tuple[str, Proposal]]:
    """(rule name, proposal) for every rule of `rules` (default: the table) that fires at `site`."""
    op = site.statement.op
    for r in rules or RULES:
        if r.ops is None or op in r.ops:
            for p in r.fire(site):
                yield r.name.replace("{op}", op), p


__all__ = ["Facts", "Proposal", "RULES", "Rule", "Site", "decimal", "key", "proposals", "rule"]
