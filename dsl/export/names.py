"""What things are called in an exported optimizer: the program's constants as hyperparameters,
its variables as Python names.

Constants become constructor arguments named by their role (`name_constants`): a coefficient
of `interp`, `bias_correct` or of a state times a constant is a beta, `w * c` added to the
update is `weight_decay`, a small constant added on the way to a denominator is `eps`,
`orthogonalize`'s are `ns_a, ns_b, ns_c, ns_steps, ns_eps`, anything else is `c0, c1, ...`. One argument per distinct value within a role, so AdamW's 0.9 in `interp`
and in `bias_correct` is one `betas[0]` and changing it changes both, as in `torch.optim.Adam`.

Variables keep their own names where they can (`python_names`), in a namespace the generated
code's own names never enter.
"""
from __future__ import annotations

import builtins
import keyword
import unicodedata
from dataclasses import dataclass, field

from optsearch.dsl.analysis import Analysis, check
from optsearch.dsl.ir import Const, Program

EPS_MAX = 1e-3  # the largest constant still read as an epsilon
NS_ROLES = ("ns_a", "ns_b", "ns_c", "ns_steps", "ns_eps")
"""The roles (and argument names) of `orthogonalize`'s constants: torch.optim.Muon's
`ns_coefficients=(ns_a, ns_b, ns_c)`, `ns_steps` and `eps`."""


@dataclass
class Hyperparameter:
    """One constructor argument (and param-group key) made of the program's constants."""

    arg: str                        # "betas", "beta", "momentum", "eps", "weight_decay", "c0", ...
    role: str                       # "beta" (also for betas/momentum), "eps", "weight_decay", "constant"
    values: list[float] = field(default_factory=list)       # one per code name
    code_names: list[str] = field(default_factory=list)     # names inside the step functions
    uses: list[list[int]] = field(default_factory=list)     # per code name: statement indices

    @property
    def default(self) -> str:
        if self.arg == "betas":
            return "(" + ", ".join(repr(v) for v in self.values) + ("," if len(self.values) == 1 else "") + ")"
        return repr(self.values[0])


@dataclass(frozen=True)
class Constants:
    """The program's constants as hyperparameters, and which code name each occurrence reads."""

    hyper: list[Hyperparameter]
    code: dict[tuple[int, int], str]    # (statement index, argument position) -> code name
    betas: frozenset[str]               # code names validated to lie in [0, 1)


def name_constants(program: Program, analysis: Analysis | None = None) -> Constants:
    """Give every constant of a live statement a role and a name (see the module docstring)."""
    a = analysis or check(program)
    body, live = program.body, sorted(a.live)
    finals = {a.outputs[1 + program.state.index(s)] for s in a.live_state}
    stateful = set(a.live_state) | {f for f in finals if isinstance(f, int)}

    # Statements whose value flows (within the step) into a denominator: where eps lives.
    work = [a.reads[i][1] for i in live if body[i].op == "div"]
    work += [a.reads[i][0] for i in live if body[i].op == "reciprocal"]
    feeds_denominator: set[int] = set()
    while work:
        src = work.pop()
        if isinstance(src, int) and src not in feeds_denominator:
            feeds_denominator.add(src)
            work += [r for r in a.reads[src] if r is not None]
    feeds_sum = {r for i in live if body[i].op in ("add", "sub") for r in a.reads[i]}

    def role(i: int, pos: int, v: float) -> str:
        op, reads = body[i].op, a.reads[i]
        if op == "orthogonalize":
            return NS_ROLES[pos - 1]
        others = [r for k, r in enumerate(reads) if k != pos and r is not None]
        if 0 <= v < 1 and (
                (op == "interp" and pos == 2 and (i in finals or any(r in stateful for r in reads[:2])))
                or (op == "bias_correct" and pos == 1)
                or (op == "mul" and any(r in stateful for r in others))):
            return "beta"
        if op == "mul" and v >= 0 and others == ["w"] and i in feeds_sum:
            return "weight_decay"
        if op == "add" and 0 < v <= EPS_MAX and i in feeds_denominator:
            return "eps"
        return "constant"

    # Group occurrences: (role, value) in order of first use; repr keeps -0.0 apart from 0.0.
    groups: dict[tuple[str, str], tuple[float, list[tuple[int, int]]]] = {}
    for i in live:
        for pos, arg in enumerate(body[i].args):
            if isinstance(arg, Const):
                v = float(arg.value)
                key = (role(i, pos, v), repr(v))
                groups.setdefault(key, (v, []))[1].append((i, pos))
    for r in ("weight_decay", "eps", *NS_ROLES):  # one argument each; further values become plain constants
        for key in [k for k in groups if k[0] == r][1:]:
            v, occ = groups.pop(key)
            groups.setdefault(("constant", key[1]), (v, []))[1].extend(occ)

    hyper: list[Hyperparameter] = []
    code: dict[tuple[int, int], str] = {}
    betas = [(v, occ) for (r, _), (v, occ) in groups.items() if r == "beta"]
    if betas:
        only_decay = all(body[i].op == "mul" for _, occ in betas for i, _ in occ)
        arg = "betas" if len(betas) > 1 else ("momentum" if only_decay else "beta")
        names = [f"beta{k + 1}" for k in range(len(betas))] if arg == "betas" else [arg]
        hyper.append(Hyperparameter(arg, "beta"))
        for name, (v, occ) in zip(names, betas):
            hyper[-1].values.append(v)
            hyper[-1].code_names.append(name)
            hyper[-1].uses.append(sorted({i for i, _ in occ}))
            code.update({o: name for o in occ})
    n_const = 0
    for r in ("eps", "weight_decay", *NS_ROLES, "constant"):
        for (gr, _), (v, occ) in groups.items():
            if gr == r:
                name = r if r != "constant" else f"c{n_const}"
                n_const += r == "constant"
                hyper.append(Hyperparameter(name, r, [v], [name], [sorted({i for i, _ in occ})]))
                code.update({o: name for o in occ})
    beta_names = frozenset(n for h in hyper if h.role == "beta" for n in h.code_names)
    return Constants(hyper, code, beta_names)


# ---------------------------------------------------------------------------------------------
# Names in the generated code
#
# Two namespaces that cannot meet: every name the exporters make up (locals, lists, functions,
# a transform's state keys) begins with `_`; a program's names, as Python names, never do. Where
# the code paths also read names from elsewhere (Python's keywords and builtins, the module's
# imports, the constants' names) a program's name that means one of them is renamed.

_PYTHON = frozenset(keyword.kwlist) | frozenset(dir(builtins))
MODULE_IMPORTS = frozenset({"torch", "Tensor", "Optimizer", "dist"})  # names every generated module binds
_INPUTS = ("w", "g", "lr", "step")


def python_names(program: Program, constants: Constants) -> dict[str, str]:
    """Program variable -> Python name: its own, unless it begins with `_`, is not in the form
    Python reads it in (NFKC: `ﬁ` is read as `fi`), or is a keyword, a builtin, one of the module's
    imports or a constant's name; then `NAME_v` (`_v1`, ...), without leading underscores.

    A statement assigning `lr` gets its own name too (key `"=lr"`): the plain path's loop
    shares `lr` between parameters, so it must never be rebound there.
    """
    names = list(dict.fromkeys(program.params + tuple(s.target for s in program.body)))
    reserved = _PYTHON | MODULE_IMPORTS | {n for h in constants.hyper for n in h.code_names}
    taken = {unicodedata.normalize("NFKC", n) for n in names} | reserved

    def rename(name: str) -> str:
        base = unicodedata.normalize("NFKC", name).lstrip("_")
        base = base if base.isidentifier() else "v"
        new, k = f"{base}_v", 1
        while new in taken:
            new, k = f"{base}_v{k}", k + 1
        taken.add(new)
        return new

    out: dict[str, str] = {}
    for name in names:
        clash = (name.startswith("_") or name in reserved or unicodedata.normalize("NFKC", name) != name)
        out[name] = rename(name) if clash and name not in _INPUTS else name
    if any(s.target == "lr" for s in program.body):
        out["=lr"] = rename("lr")
    return out
