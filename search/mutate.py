"""Mutations: small edits of a program that return a new program (the IR is immutable).

Programs are mutated in SSA form (every statement defines a new name, as the canonical form
does), which makes "where is this value used" a simple question. Each mutation picks its
edit at random from the `random.Random` it is given, so a seeded search is reproducible.
A mutation may fail to apply (no constant to perturb, nothing to delete): it returns None and
the caller draws again. Children are not type-checked here: the search's abstract execution
does that, and counts the rejects.

Besides the classic insert / delete / change-argument / change-op / perturb-constant (one, or
all at once), three mutations make the moves that matter for optimizers likely (a naive
evolution from AdamW towards Lion stalls without them):
`wrap` applies an op to a value in place (`x = sign(x)` right where `x` is made), `split`
copies a statement with one constant moved so that two of its uses can differ (Lion's `c` and
`m` come from one interpolation with two betas), and `add_state` adds a new exponential moving
average of a value.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from optsearch.dsl import INPUTS, OPS, Const, Operand, Program, Statement, Var, variable_types
from optsearch.dsl.rewrite import to_ssa

# Constants new statements draw from: the values optimizers are written with.
CONSTANT_POOL: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999, 1.0, 2.0, 0.1, 0.01, 1e-3, 1e-8)
BETAS: tuple[float, ...] = (0.9, 0.99, 0.999)
# Perturbation scales in log space: fine tuning, a step, jumps (0.9 -> 0.99 is a jump of -2.3).
PERTURB_SIGMAS: tuple[float, ...] = (0.05, 0.3, 1.0, 2.0)
# A split's copy jumps: a copy within a few percent of the original serves its uses alike (a
# near-neutral child), while two uses that want different values (a fast and a slow average) do not.
SPLIT_SIGMAS: tuple[float, ...] = (1.0, 2.0)
# A sweep's scalings of a term (`neighbours`): twice or half its size.
SWEEP_SCALES: tuple[float, ...] = (2.0, 0.5)
P_CONST = 0.25              # chance that a new argument is a constant
P_COEFFICIENT_CONST = 0.9   # the same in an op's coefficient slots (Op.coefficient_args)


@dataclass
class _Draft:
    """A program being edited: SSA body, parameters, returned names."""

    name: str
    params: list[str]
    body: list[Statement]
    returns: list[str]
    ops: dict[str, float] | None = None   # ops new statements may use, with weights (None: all, equally)

    @classmethod
    def of(cls, p: Program, ops: dict[str, float] | None = None) -> "_Draft":
        return cls(p.name, list(p.params), list(p.body), list(p.returns), ops)

    def program(self) -> Program:
        params = [p for p in INPUTS if p in self.params or (p == "step" and self._reads("step"))]
        params += [p for p in self.params if p not in INPUTS]
        return Program(self.name, tuple(params), tuple(self.body), tuple(self.returns))

    def _reads(self, name: str) -> bool:
        return any(isinstance(a, Var) and a.name == name for s in self.body for a in s.args)

    def fresh(self) -> str:
        taken = set(self.params) | {s.target for s in self.body}
        k = len(self.body) + 1
        while f"t{k}" in taken:
            k += 1
        return f"t{k}"

    def available(self, pos: int) -> list[str]:
        """Names readable by a statement inserted at `pos`."""
        return [p for p in INPUTS] + [p for p in self.params if p not in INPUTS] + [s.target for s in self.body[:pos]]

    def definition(self, name: str) -> int:
        """Index of the statement defining `name`; -1 for a parameter (or `step`)."""
        for i, s in enumerate(self.body):
            if s.target == name:
                return i
        return -1

    def uses(self, name: str, after: int = -1) -> list[tuple[int, int]]:
        """(statement, argument) positions reading `name` after statement `after`; (-1, k) is return slot k."""
        out = [(i, j) for i, s in enumerate(self.body) if i > after
               for j, a in enumerate(s.args) if isinstance(a, Var) and a.name == name]
        return out + [(-1, k) for k, r in enumerate(self.returns) if r == name]

    def redirect(self, sites: list[tuple[int, int]], name: str) -> None:
        for i, j in sites:
            if i == -1:
                self.returns[j] = name
            else:
                s = self.body[i]
                args = list(s.args)
                args[j] = Var(name)
                self.body[i] = replace(s, args=tuple(args))


def _types(d: _Draft) -> dict[str, str]:
    types = variable_types(d.program())
    types.setdefault("step", "scalar")
    return types


def _constant(rng: random.Random) -> Const:
    return Const(rng.choice(CONSTANT_POOL))


def _operand(rng: random.Random, d: _Draft, pos: int, types: dict[str, str], want: str,
             coefficient: bool = False) -> Operand:
    """A value for an argument of type `want` at `pos`: a constant a quarter of the time, or 90%
    of the time in a `coefficient` slot (an interpolation weight is a number far more often than data)."""
    names = [n for n in d.available(pos) if want != "tensor" or types.get(n) == "tensor"]
    p_const = P_COEFFICIENT_CONST if coefficient else P_CONST
    if want != "tensor" and rng.random() < p_const or not names:
        return _constant(rng)
    return Var(rng.choice(names))


def _operands(rng: random.Random, d: _Draft, pos: int, types: dict[str, str], op: str,
              fixed: dict[int, Operand] | None = None) -> tuple[Operand, ...]:
    """Arguments for a new `op` statement at `pos`, with `fixed` ones given (and the op's `defaults`
    where nothing is given: Newton-Schulz coefficients drawn from the pool would not orthogonalize)."""
    spec = OPS[op]
    fixed = {k: Const(v) for k, v in spec.defaults} | (fixed or {})
    return tuple(fixed[k] if k in fixed else _operand(rng, d, pos, types, t, k in spec.coefficient_args)
                 for k, t in enumerate(spec.types()))


def _random_op(rng: random.Random, d: _Draft, arity: int | None = None) -> str | None:
    """An op of the searched ones, by weight; with `arity`, one that takes that many arguments
    besides its defaults (`Op.free_arity`)."""
    pool = d.ops if d.ops is not None else dict.fromkeys(OPS, 1.0)
    names = [n for n, w in pool.items() if w > 0 and (arity is None or OPS[n].free_arity == arity)]
    if not names:
        return None
    return rng.choices(names, weights=[pool[n] for n in names])[0]


def _result_type(op: str, args: tuple[Operand, ...], types: dict[str, str]) -> str:
    if OPS[op].kind != "elementwise":
        return "scalar"
    return "tensor" if any(isinstance(a, Var) and types.get(a.name) == "tensor" for a in args) else "scalar"


def _site_accepts(d: _Draft, site: tuple[int, int], rtype: str) -> bool:
    i, j = site
    if i == -1:
        return rtype == "tensor"
    return rtype == "tensor" or OPS[d.body[i].op].types()[j] == "any"


# --- the mutations: each edits a draft in place and returns False when it does not apply ----------

def insert(rng: random.Random, d: _Draft) -> bool:
    """A new statement of a random op over values available at a random place, spliced into one later use."""
    types = _types(d)
    pos = rng.randint(0, len(d.body))
    op = _random_op(rng, d)
    if op is None:
        return False
    args = _operands(rng, d, pos, types, op)
    if not any(isinstance(a, Var) for a in args):  # an op over constants only is a constant
        k = rng.randrange(len(args))
        args = args[:k] + (Var(rng.choice(d.available(pos))),) + args[k + 1:]
    rtype = _result_type(op, args, types)
    name = d.fresh()
    d.body.insert(pos, Statement(name, op, args))
    sites = [(i, j) for i, j in _all_sites(d, after=pos) if _site_accepts(d, (i, j), rtype)]
    if not sites:
        return False
    d.redirect([rng.choice(sites)], name)
    return True


def _all_sites(d: _Draft, after: int) -> list[tuple[int, int]]:
    return [(i, j) for i, s in enumerate(d.body) if i > after for j in range(len(s.args))] + \
           [(-1, k) for k in range(len(d.returns))]


def wrap(rng: random.Random, d: _Draft) -> bool:
    """`x = op(x, ...)` right after `x` is made; every later use of `x` reads the result.

    Half the time the op is unary (`x = f(x)`, the move that turns an update into its sign),
    otherwise any op with `x` at a random argument position.
    """
    types = _types(d)
    candidates = [n for n in d.available(len(d.body)) if d.uses(n)]
    if not candidates:
        return False
    x = rng.choice(candidates)
    pos = d.definition(x) + 1
    op = _random_op(rng, d, 1 if rng.random() < 0.5 else None)
    if op is None:
        op = _random_op(rng, d)
    if op is None:
        return False
    spec = OPS[op].types()
    slots = [k for k, t in enumerate(spec) if (t == "any" or types.get(x) == "tensor")
             and k not in OPS[op].coefficient_args]
    if not slots:
        return False
    at = rng.choice(slots)
    _wrap_at(d, x, op, _operands(rng, d, pos, types, op, {at: Var(x)}))
    return True


def _wrap_at(d: _Draft, x: str, op: str, args: tuple[Operand, ...]) -> None:
    """`new = op(*args)` right after `x` is made; every later use of `x` reads `new`."""
    pos = d.definition(x) + 1
    uses = d.uses(x, after=pos - 1)
    name = d.fresh()
    d.body.insert(pos, Statement(name, op, args))
    d.redirect([(i + 1 if i >= 0 else i, j) for i, j in uses], name)


def delete(rng: random.Random, d: _Draft) -> bool:
    """Remove a statement; its uses read one of its variable arguments instead."""
    if not d.body:
        return False
    i = rng.randrange(len(d.body))
    choices = _keepable(d, i, _types(d))
    if not choices:
        return False
    _delete_at(d, i, rng.choice(choices))
    return True


def _keepable(d: _Draft, i: int, types: dict[str, str]) -> list[str]:
    """The arguments of statement `i` its uses may read when it is deleted (a tensor stays a tensor)."""
    s = d.body[i]
    rtype = types[s.target]
    return [a.name for a in s.args if isinstance(a, Var) and (rtype == "scalar" or types.get(a.name) == "tensor")]


def _delete_at(d: _Draft, i: int, keep: str) -> None:
    uses = d.uses(d.body[i].target, after=i)
    del d.body[i]
    d.redirect([(u - 1 if u >= 0 else u, j) for u, j in uses], keep)


def split(rng: random.Random, d: _Draft) -> bool:
    """Copy a statement under a new name; a random part of its uses reads the copy, and one
    constant of the copy moves (as `perturb_constant`), so the two can serve different uses
    (Lion's update and its momentum are one interpolation with two betas)."""
    shared = [i for i, s in enumerate(d.body) if len(d.uses(s.target, after=i)) >= 2]
    if not shared:
        return False
    i = rng.choice(shared)
    s = d.body[i]
    uses = d.uses(s.target, after=i)
    moved = rng.sample(uses, rng.randint(1, len(uses) - 1))
    name = d.fresh()
    args = s.args
    consts = [k for k, a in enumerate(args) if isinstance(a, Const) and _movable(s, k)]
    if consts:
        k = rng.choice(consts)
        args = args[:k] + (Const(perturb_value(args[k].value, rng, SPLIT_SIGMAS, _beta_slot(s, k))),) + args[k + 1:]
    d.body.insert(i + 1, Statement(name, s.op, args))
    d.redirect([(u + 1 if u >= 0 else u, j) for u, j in moved], name)
    return True


def swap(rng: random.Random, d: _Draft) -> bool:
    """Exchange the order of two chained statements: `t = f(x, a); u = h(t, b)` becomes
    `t' = h(x, b); u = f(t', a)`, where `t` had no other use. The sign of a sum becomes the sign of
    one term plus the other (`sign(d + wd * w)` -> `sign(d) + wd * w`: decay outside the sign),
    a clip before a momentum moves after it, a square root before a mean after it."""
    chains = _swappable(d)
    if not chains:
        return False
    i, k, j, slots = rng.choice(chains)
    _swap_at(d, i, k, j, rng.choice(slots))
    return True


def _swappable(d: _Draft) -> list[tuple[int, int, int, list[int]]]:
    """(outer statement, its argument reading the inner, inner statement, the inner's arguments
    that may move to the outer) for every chain a `swap` can reorder."""
    out = []
    for i, outer in enumerate(d.body):
        for k, a in enumerate(outer.args):
            if not isinstance(a, Var) or k in OPS[outer.op].coefficient_args or len(d.uses(a.name)) != 1:
                continue
            j = d.definition(a.name)
            if j < 0:
                continue
            inner = d.body[j]
            coefficients = OPS[inner.op].coefficient_args
            slots = [m for m, b in enumerate(inner.args) if isinstance(b, Var) and m not in coefficients]
            if slots:
                out.append((i, k, j, slots))
    return out


def _swap_at(d: _Draft, i: int, k: int, j: int, m: int) -> None:
    outer, inner = d.body[i], d.body[j]
    first = Statement(d.fresh(), outer.op, outer.args[:k] + (inner.args[m],) + outer.args[k + 1:])
    second = Statement(outer.target, inner.op, inner.args[:m] + (Var(first.target),) + inner.args[m + 1:])
    d.body[i:i + 1] = [first, second]
    del d.body[j]


def change_arg(rng: random.Random, d: _Draft) -> bool:
    """One argument of a statement reads another available value or a constant."""
    with_args = [i for i, s in enumerate(d.body) if s.args]
    if not with_args:
        return False
    types = _types(d)
    i = rng.choice(with_args)
    s = d.body[i]
    j = rng.randrange(len(s.args))
    if not _movable(s, j):
        return False
    new = _operand(rng, d, i, types, OPS[s.op].types()[j], j in OPS[s.op].coefficient_args)
    others = s.args[:j] + s.args[j + 1:]
    if new == s.args[j] or (isinstance(new, Const) and not any(isinstance(a, Var) for a in others)):
        return False
    _set_arg(d, i, j, new)
    return True


def _set_arg(d: _Draft, i: int, j: int, operand: Operand) -> None:
    s = d.body[i]
    d.body[i] = replace(s, args=s.args[:j] + (operand,) + s.args[j + 1:])


def neighbours(program: Program, ops: dict[str, float] | None = None) -> list[tuple[Program, str]]:
    """Every program one structural edit away, in a fixed order, smallest neighbourhoods first:
    each used value wrapped by each unary op of `ops` (default: every op; an op with `defaults`
    counts its other arguments only, so `orthogonalize` is one), each tensor value twice
    and half its size, each statement deleted (for each argument its uses may read instead), each
    chain swapped, each argument reading an input or a state instead (of an acceptable type: the
    linear part of the quadratic change-argument neighbourhood, where decay terms are fixed, and a
    constant that stands in for `lr`) or 0 (a term dropped:
    `interp(lr, w, 0.5)` becomes `0.5 * w`). The search's sweep tries them all on
    a stalled best: the decisive steps are often single edits too rare to draw at random (an Adam
    update wrapped by `sign`, 1 in about 800 children; a decay term reading `w` rather than a moving
    average of `w`; a no-op `minimum(lr, 1.7)` dropped)."""
    base = _Draft.of(to_ssa(program), ops)
    types = _types(base)
    pool = ops if ops is not None else dict.fromkeys(OPS, 1.0)
    unary = [n for n, w in pool.items() if w > 0 and OPS[n].free_arity == 1]
    out: list[tuple[Program, str]] = []

    def edit(name: str, change) -> None:
        d = _Draft.of(base.program(), ops)
        change(d)
        out.append((d.program(), name))

    for x in [n for n in base.available(len(base.body)) if base.uses(n)]:
        for op in unary:
            if OPS[op].types()[0] == "any" or types.get(x) == "tensor":
                free = next(k for k in range(OPS[op].arity) if k not in dict(OPS[op].defaults))
                args = _operands(None, base, 0, types, op, {free: Var(x)})  # the others: defaults
                edit("wrap", lambda d, op=op, x=x, args=args: _wrap_at(d, x, op, args))
        if types.get(x) == "tensor":
            for c in SWEEP_SCALES:
                edit("scale", lambda d, x=x, c=c: _wrap_at(d, x, "mul", (Var(x), Const(c))))
    for i in range(len(base.body)):
        for keep in _keepable(base, i, types):
            edit("delete", lambda d, i=i, keep=keep: _delete_at(d, i, keep))
    for i, k, j, slots in _swappable(base):
        for m in slots:
            edit("swap", lambda d, site=(i, k, j, m): _swap_at(d, *site))
    for i, s in enumerate(base.body):
        for j, a in enumerate(s.args):
            if j in OPS[s.op].coefficient_args:
                continue
            want = OPS[s.op].types()[j]
            for n in base.params:
                if Var(n) != a and (want != "tensor" or types.get(n) == "tensor"):
                    edit("change_arg", lambda d, i=i, j=j, n=n: _set_arg(d, i, j, Var(n)))
            others = [b for k, b in enumerate(s.args) if k != j]
            if isinstance(a, Var) and want != "tensor" and any(isinstance(b, Var) for b in others):
                edit("change_arg", lambda d, i=i, j=j: _set_arg(d, i, j, Const(0.0)))  # a term dropped
    return out


def change_op(rng: random.Random, d: _Draft) -> bool:
    """Same arguments, another op of the same arity."""
    if not d.body:
        return False
    i = rng.randrange(len(d.body))
    s = d.body[i]
    op = _random_op(rng, d, len(s.args))
    if op is None or op == s.op:
        return False
    d.body[i] = replace(s, op=op)
    return True


def perturb_constant(rng: random.Random, d: _Draft) -> bool:
    """Move one constant in log space: betas (an interpolation weight or a bias correction's beta,
    0.5 <= c < 1) move in log(1 - c), so 0.9 can reach 0.99."""
    sites = [(i, j) for i, s in enumerate(d.body) for j, a in enumerate(s.args)
             if isinstance(a, Const) and _movable(s, j)]
    if not sites:
        return False
    i, j = rng.choice(sites)
    s = d.body[i]
    new = perturb_value(s.args[j].value, rng, beta=_beta_slot(s, j))
    if new == s.args[j].value:
        return False
    _set_arg(d, i, j, Const(new))
    return True


# A joint move's scales: small, since every constant moves at once.
JOINT_SIGMAS: tuple[float, ...] = (0.03, 0.1, 0.3)


def perturb_all(rng: random.Random, d: _Draft) -> bool:
    """Move every constant at once, each by its own draw at one shared small scale (log space,
    betas in log(1 - c)). Constants that must move together, such as the two betas of Lion's
    interpolations (a fitness ridge: moving either alone is worse), climb with this move where
    `perturb_constant` stalls."""
    sites = [(i, j) for i, s in enumerate(d.body) for j, a in enumerate(s.args)
             if isinstance(a, Const) and math.isfinite(a.value) and a.value != 0.0 and _movable(s, j)]
    if len(sites) < 2:
        return False
    sigma = rng.choice(JOINT_SIGMAS)
    moved = False
    for i, j in sites:
        s = d.body[i]
        new = perturb_value(s.args[j].value, rng, (sigma,), _beta_slot(s, j))
        moved |= new != s.args[j].value
        _set_arg(d, i, j, Const(new))
    return moved


def _movable(s: Statement, j: int) -> bool:
    """Whether mutations may change argument `j` of `s`: not at one of its op's `defaults` (the
    Newton-Schulz coefficients are the op's definition, written once when it is made)."""
    return j not in dict(OPS[s.op].defaults)


def _beta_slot(s: Statement, j: int) -> bool:
    """Whether argument `j` of `s` is a beta: an interpolation weight or a bias correction's beta."""
    return j in OPS[s.op].coefficient_args


def perturb_value(c: float, rng: random.Random, sigmas: tuple[float, ...] = PERTURB_SIGMAS,
                  beta: bool | None = None) -> float:
    """A perturbed constant, rounded to 3 significant digits (of 1 - c for betas) to stay readable;
    the log-space step's scale is drawn from `sigmas`. A beta in [0.5, 1) moves in log(1 - c) and
    stays there; any other constant moves in log(|c|), so a weight decay of 0.01 can grow past 1.
    `beta` says whether `c` sits in a beta's slot (None: judge by its value alone)."""
    if not math.isfinite(c) or c == 0.0:
        return rng.choice(CONSTANT_POOL)
    factor = math.exp(rng.gauss(0.0, rng.choice(sigmas)))
    if 0.5 <= c < 1.0 and beta is not False:
        return _round_sig(1.0 - _round_sig(min((1.0 - c) * factor, 0.5)), 10)  # 0.9269, not 0.9269000000000001
    return _round_sig(c * factor)


def _round_sig(x: float, digits: int = 3) -> float:
    return float(f"{x:.{digits}g}")


def add_state(rng: random.Random, d: _Draft) -> bool:
    """A new state: an exponential moving average `t = interp(x, s, beta)` of a tensor value `x`,
    kept across steps and spliced into one use of `x`."""
    types = _types(d)
    tensors = [n for n in d.available(len(d.body)) if types.get(n) == "tensor" and d.uses(n)]
    if not tensors:
        return False
    x = rng.choice(tensors)
    pos = d.definition(x) + 1
    k = 1
    while f"s{k}" in d.params or f"s{k}" in {s.target for s in d.body}:
        k += 1
    state, name = f"s{k}", d.fresh()
    uses = d.uses(x, after=pos - 1)
    d.params.append(state)
    d.body.insert(pos, Statement(name, "interp", (Var(x), Var(state), Const(rng.choice(BETAS)))))
    d.returns.append(name)
    i, j = rng.choice(uses)
    d.redirect([(i + 1 if i >= 0 else i, j)], name)
    return True


MUTATIONS = {"insert": insert, "wrap": wrap, "delete": delete, "split": split, "change_arg": change_arg,
             "change_op": change_op, "perturb_constant": perturb_constant, "perturb_all": perturb_all,
             "add_state": add_state, "swap": swap}


def mutate(program: Program, rng: random.Random, weights: dict[str, float],
           ops: dict[str, float] | None = None) -> tuple[Program, str] | None:
    """Apply one mutation drawn by `weights`; returns (child, mutation name) or None if it did not apply.

    `ops` are the ops new statements may use, with their weights (default: every registered op).
    """
    names = [n for n, w in weights.items() if w > 0]
    name = rng.choices(names, weights=[weights[n] for n in names])[0]
    d = _Draft.of(to_ssa(program), ops)
    if not MUTATIONS[name](rng, d):
        return None
    return d.program(), name


__all__ = ["CONSTANT_POOL", "MUTATIONS", "mutate", "neighbours", "perturb_value", "to_ssa"]
