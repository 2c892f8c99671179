"""Equivalence before evaluation: reject invalid children, reuse the fitness of equivalent ones.

Two checks, cheapest first. The canonical hash (`optsearch.dsl.structural_hash`) catches
programs that are the same expression DAG. The functional fingerprint catches programs that
compute the same updates by other means (`interp(g, m, 0.9)` and `interp(m, g, 0.1)`,
`sign(2 * x)` and `sign(x)`): a few steps on fixed random inputs, at two learning rates, with
the resulting updates rounded to 6 significant digits and hashed. Rounding makes it robust to
float reassociation; very rarely two different programs round alike, which costs one missed
evaluation, never a wrong result stored under the wrong program.
"""
from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass

import torch

from optsearch.dsl import OPS, Program, ProgramError, check, structural_hash
from optsearch.dsl.analysis import reads_input
from optsearch.dsl.probe import probe_for
from optsearch.dsl.rewrite import simplify_static

FINGERPRINT_STEPS = 4
SIGNIFICANT_DIGITS = 6


@dataclass(frozen=True)
class Screen:
    """What abstract execution and the fingerprint say about a child before any evaluation."""

    ok: bool
    reason: str | None = None        # why it was rejected
    hash: str | None = None
    fingerprint: str | None = None


def fingerprint(program: Program) -> tuple[str, torch.Tensor]:
    """The fingerprint hash and the raw updates `(steps, lrs, N)` it was computed from: the first
    `FINGERPRINT_STEPS` steps on the probe inputs (`optsearch.dsl.probe`)."""
    u = probe_for(program).updates(program, FINGERPRINT_STEPS)
    text = ",".join(f"{v:.{SIGNIFICANT_DIGITS}g}" for v in u.flatten().tolist())
    return hashlib.sha256(text.encode()).hexdigest()[:16], u


def screen(program: Program, max_statements: int | None = None) -> Screen:
    """Check `program` statically and on the fingerprint inputs; see the module docstring.

    Rejected: anything `check` refuses, more live statements than `max_statements`, an update
    that never reads the gradient, and updates that are all zero or not finite on the fixed inputs.
    """
    try:
        a = check(program)
    except ProgramError as e:
        return Screen(False, f"invalid: {e}")
    if max_statements is not None and len(a.live) > max_statements:
        return Screen(False, f"too long: {len(a.live)} live statements > {max_statements}")
    if not reads_input(program, a, "g"):
        return Screen(False, "ignores the gradient")
    h = structural_hash(program)
    try:
        fp, u = fingerprint(program)
    except Exception as e:  # an op that cannot run on these inputs: a bad child, never a crashed search
        return Screen(False, f"fails on the fingerprint inputs: {type(e).__name__}: {e}", h)
    if not bool(torch.isfinite(u).all()):
        return Screen(False, "non-finite update on the fingerprint inputs", h, fp)
    if not bool((u != 0).any()):
        return Screen(False, "zero update on the fingerprint inputs", h, fp)
    return Screen(True, None, h, fp)


def screen_child(program: Program, max_statements: int | None = None,
                 simplify: bool = True) -> tuple[Program, Screen]:
    """A search child as it will be stored and scored: with `simplify`, rewritten by the exact rules
    of `simplify_static` first (dead code and state gone, `sign(x / positive)` = `sign(x)`, constants
    folded, ...), so that bloat never costs an evaluation and the program that is hashed, cached,
    evaluated and compared with a target is the shortest form of its behaviour; then `screen`ed."""
    if simplify:
        try:
            program = simplify_static(program)[0]
        except ProgramError:
            pass  # invalid: `screen` says why
    return program, screen(program, max_statements)


class EquivalenceCache:
    """Maps canonical hashes and fingerprints to the program whose evaluation they can reuse.

    `hash_hits` and `fingerprint_hits` count the lookups that found an equivalent program, by which
    check (a caller that looks a child up twice counts twice).
    """

    def __init__(self) -> None:
        self.by_hash: dict[str, int] = {}
        self.by_fingerprint: dict[str, int] = {}
        self.hash_hits = 0
        self.fingerprint_hits = 0

    def add(self, program_id: int, h: str | None, fp: str | None) -> None:
        if h is not None:
            self.by_hash.setdefault(h, program_id)
        if fp is not None:
            self.by_fingerprint.setdefault(fp, program_id)

    def lookup(self, h: str, fp: str) -> tuple[int, str] | None:
        """(program id, "hash" | "fingerprint") of an equivalent known program, or None; counts the hits."""
        if h in self.by_hash:
            self.hash_hits += 1
            return self.by_hash[h], "hash"
        if fp in self.by_fingerprint:
            self.fingerprint_hits += 1
            return self.by_fingerprint[fp], "fingerprint"
        return None


def matches(program: Program, target: Program, rel_tol: float = 0.01, abs_tol: float = 0.0) -> bool:
    """Whether `program` has `target`'s canonical form with every constant close to the target's.

    Compared as expression trees from the outputs (dead code does not count; commutative
    arguments may come in either order; state variables may be named and ordered differently),
    so constants that differ slightly cannot reorder the comparison as they can a canonical
    text. A constant matches when within `rel_tol` of the target's, or within `abs_tol`.
    """
    try:
        a, b = check(program), check(target)
    except ProgramError:
        return False
    if len(a.live_state) != len(b.live_state):
        return False
    sa, sb = program.state, target.state

    def close(x: float, y: float) -> bool:
        return x == y or abs(x - y) <= max(rel_tol * abs(y), abs_tol)

    for perm in itertools.permutations(b.live_state):
        mapping = dict(zip(a.live_state, perm))
        memo: dict[tuple, bool] = {}

        def eq(x, y) -> bool:
            key = (x, y)
            if key not in memo:
                memo[key] = False  # no cycles in one step's DAG; guards re-entry all the same
                memo[key] = _eq(x, y)
            return memo[key]

        def _eq(x, y) -> bool:
            if isinstance(x, str) or isinstance(y, str):
                if not (isinstance(x, str) and isinstance(y, str)):
                    return False
                return mapping.get(x, x) == y if x in sa else x == y and y not in sb
            s, t = program.body[x], target.body[y]
            if s.op != t.op:
                return False
            pa = [(r, arg) for r, arg in zip(a.reads[x], s.args)]
            pb = [(r, arg) for r, arg in zip(b.reads[y], t.args)]
            orders = [pb] + ([pb[::-1]] if OPS[s.op].commutative and len(pb) == 2 else [])
            return any(all(arg_eq(u, v) for u, v in zip(pa, o)) for o in orders)

        def arg_eq(u, v) -> bool:
            (ru, au), (rv, av) = u, v
            if ru is None or rv is None:
                return ru is None and rv is None and close(float(au.value), float(av.value))
            return eq(ru, rv)

        if eq(a.outputs[0], b.outputs[0]) and all(
                eq(a.outputs[1 + sa.index(s)], b.outputs[1 + sb.index(mapping[s])]) for s in a.live_state):
            return True
    return False


__all__ = ["EquivalenceCache", "Screen", "fingerprint", "matches", "screen"]
