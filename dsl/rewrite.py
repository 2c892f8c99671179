"""Exact simplification: rewrite a program to a fixed point without changing what it computes.

Raw winners of a search are bloated: dead statements, `sign(bias_correct(...))`, scalings that
cancel. `simplify_static` removes dead code and dead state, merges state that is always equal,
replaces state that is never updated by its initial 0, and applies the rule table
(`optsearch.dsl.rules`: common subexpressions, constant folding, algebraic identities) until
nothing changes, with no evaluation. Each rewrite is double-checked on the probe
(`optsearch.dsl.probe`: the program's updates on fixed random inputs) before it is accepted; one
that changes them is a bug in a rule (raised with `strict`, skipped otherwise).

Programs are rewritten in SSA form (`to_ssa`), where every name is one value, so substitution is
global; `restore_names` gives the result its original variable names back wherever that keeps it
correct.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch

from optsearch.dsl.analysis import check
from optsearch.dsl.errors import ProgramError
from optsearch.dsl.ir import Const, Operand, Program, Statement, Var
from optsearch.dsl.ops import OPS
from optsearch.dsl.printer import format_statement
from optsearch.dsl.probe import Probe, probe_for
from optsearch.dsl.rules import Facts, Rule, Site, key, proposals


class RewriteChangedBehaviour(AssertionError):
    """A rewrite changed the updates on the probe inputs: a bug in a rule (raised with `strict=True`)."""


@dataclass(frozen=True)
class Rewrite:
    """Statement `index` becomes `new`, or (with `alias`) goes away and its uses read `alias`."""

    index: int
    rule: str
    new: Statement | None = None
    alias: Operand | None = None


def to_ssa(program: Program) -> Program:
    """`program` with every statement defining a fresh name (what mutations and rewrites edit)."""
    check(program)
    seen: dict[str, str] = {}
    body, taken = [], set(program.params) | {s.target for s in program.body}
    counter = 0
    for s in program.body:
        args = tuple(Var(seen.get(a.name, a.name)) if isinstance(a, Var) else a for a in s.args)
        target = s.target
        if target in program.params or target in seen.values() or any(b.target == target for b in body):
            counter += 1
            while f"x{counter}" in taken:
                counter += 1
            target = f"x{counter}"
            taken.add(target)
        seen[s.target] = target
        body.append(Statement(target, s.op, args, s.line))
    returns = tuple(seen.get(r, r) for r in program.returns)
    return Program(program.name, program.params, tuple(body), returns, program.return_line)


def behaviour(p: Program, on: Probe | None = None) -> torch.Tensor | None:
    """`p`'s updates on the probe inputs (`on`, default `probe_for(p)`); None if it cannot run on them."""
    try:
        return (on or probe_for(p)).updates(p)
    except Exception:  # an op that cannot run on these inputs
        return None


def same_behaviour(reference: torch.Tensor | None, p: Program, on: Probe | None = None) -> bool:
    """Whether `p`'s probe updates equal `reference` (up to rounding: rtol 1e-9, NaN equal to NaN); `on`
    is the probe `reference` was computed on (default `probe_for(p)`)."""
    u = behaviour(p, on)
    if reference is None or u is None:
        return False
    return u.shape == reference.shape and bool(torch.allclose(u, reference, rtol=1e-9, atol=0.0, equal_nan=True))


def valid(p: Program) -> bool:
    """Whether `check` accepts `p`."""
    try:
        check(p)
    except ProgramError:
        return False
    return True


def alias(p: Program, i: int, to: Operand) -> Program | None:
    """Statement `i` removed, its uses reading `to` instead; None if a return would read a constant."""
    target = p.body[i].target
    if isinstance(to, Const) and target in p.returns:
        return None
    body = tuple(replace(s, args=tuple(to if isinstance(x, Var) and x.name == target else x for x in s.args))
                 for k, s in enumerate(p.body) if k != i)
    returns = tuple(to.name if r == target else r for r in p.returns) if isinstance(to, Var) else p.returns
    return replace(p, body=body, returns=returns)


def _apply(p: Program, r: Rewrite) -> Program | None:
    if r.new is not None:
        return replace(p, body=p.body[:r.index] + (r.new,) + p.body[r.index + 1:])
    return alias(p, r.index, r.alias)


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
            steps.append(f"line {s.line}: state that is never updated is 0 ({show(s, names)})")
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
    steps = [f"line {p.body[i].line}: dead code ({show(p.body[i], names)})" for i in a.dead]
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


def simplify_static(program: Program, strict: bool = False, names: dict[str, str] | None = None,
                    rules: Sequence[Rule] = ()) -> tuple[Program, list[str]]:
    """`program` rewritten to a fixed point by exact rewrites; returns (SSA program, steps taken).

    Every rewrite is checked on the probe; with `strict`, one that changes the updates raises
    `RewriteChangedBehaviour` (tests), otherwise it is skipped. Steps show statements with the
    SSA names mapped through `names` (default: back to `program`'s own names). `rules` replaces
    the rule table (default: `optsearch.dsl.rules.RULES`).
    """
    check(program)
    p = to_ssa(program)
    names = names if names is not None else original_names(program)
    on = probe_for(p)  # one probe for every rewrite of the program, whatever ops they remove
    reference = behaviour(p, on)
    steps: list[str] = []
    rejected: set[tuple[Statement, str]] = set()
    while True:
        q, frozen = _frozen_state(p, names)
        if frozen and (same_behaviour(reference, q, on) or _fail(strict, "frozen state", q)):
            p, steps = q, steps + frozen
        q, twins = _twin_state(p)
        if twins and (same_behaviour(reference, q, on) or _fail(strict, "twin state", q)):
            p, steps = q, steps + twins
        q, dead = _remove_dead(p, names)
        if dead and (same_behaviour(reference, q, on) or _fail(strict, "dead code removal", q)):
            p, steps = q, steps + dead
        facts, seen, applied = Facts(p), {}, False
        for i, s in enumerate(p.body):
            for rule, proposal in proposals(Site(p, i, facts, seen), tuple(rules)):
                if (s, rule) in rejected:
                    continue
                r = Rewrite(i, rule, new=proposal) if isinstance(proposal, Statement) else Rewrite(i, rule, alias=proposal)
                q = _apply(p, r)
                if q is None or not valid(q):
                    rejected.add((s, rule))
                    continue
                if not same_behaviour(reference, q, on):
                    _fail(strict, rule, q)
                    rejected.add((s, rule))
                    continue
                after = f" -> {show(r.new, names)}" if r.new else ""
                steps.append(f"line {s.line}: {rule} ({show(s, names)}{after})")
                p, applied = q, True
                break
            if applied:
                break
            seen.setdefault(key(s), s.target)
        if not applied:
            return p, steps


def original_names(original: Program) -> dict[str, str]:
    """SSA statement target -> the name it has in `original`."""
    return {t.target: o.target for t, o in zip(to_ssa(original).body, original.body)}


def show(s: Statement, names: dict[str, str]) -> str:
    """A statement as the user wrote it: SSA names mapped back to the original ones."""
    args = tuple(Var(names.get(x.name, x.name)) if isinstance(x, Var) else x for x in s.args)
    return format_statement(replace(s, target=names.get(s.target, s.target), args=args))


def _fail(strict: bool, rule: str, p: Program) -> bool:
    if strict:
        raise RewriteChangedBehaviour(f"rewrite {rule!r} changed the fingerprint of:\n{p}")
    return False


def restore_names(ssa: Program, original: Program) -> Program:
    """The SSA program with each statement named as in `original` wherever no value still needed
    is overwritten (SSA statement targets are `original`'s, or fresh names for reassignments)."""
    preferred = original_names(original)
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
    return renamed if valid(renamed) and same_behaviour(behaviour(ssa), renamed) else ssa


__all__ = ["Rewrite", "RewriteChangedBehaviour", "alias", "behaviour", "original_names", "restore_names",
           "same_behaviour", "show", "simplify_static", "to_ssa", "valid"]
