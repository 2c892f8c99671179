"""Export a program as a standalone `torch.optim.Optimizer` module that needs only torch.

The module holds one class (param groups, `state_dict`, closure, `foreach`) and two functions
that apply the program to a param group, as torch's own optimizers are laid out: a plain path
(`_single_tensor_*`, one parameter at a time, one line per statement, easy to audit) and a fast
path (`_multi_tensor_*`, `torch._foreach_*` over all tensors, default on CPU and CUDA). Both
compute `w <- w - update` with the program's semantics; only live statements and live state
are emitted.

The fast path writes each result into memory whose value is dead (never a gradient or a
parameter) and folds common idioms into single calls: `interp` into `_foreach_lerp_`, a moving
average of a square into `mul_` + `addcmul_`, and the end of the update (`* lr`, decoupled
decay, a division, a bias correction) into the write of the parameters. `global_norm` spans all
parameters of a param group; in the plain path it splits the loop over parameters in two.
`step` is kept per parameter as a float64 tensor (exact counts) and used in the parameter's
dtype, as the interpreter does, except in a bias correction with a named beta, which the fast
path computes in Python floats, as torch's Adam does.

Constants become constructor arguments named by their role (`name_constants`): a coefficient
of `interp`, `bias_correct` or of a state times a constant is a beta, `w * c` added to the
update is `weight_decay`, a small constant added on the way to a denominator is `eps`, anything
else is `c0, c1, ...`. One argument per distinct value within a role, so AdamW's 0.9 in `interp`
and in `bias_correct` is one `betas[0]` and changing it changes both, as in `torch.optim.Adam`.
"""
from __future__ import annotations

import keyword
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from optsearch.dsl.analysis import Analysis, check
from optsearch.dsl.errors import OptsearchError
from optsearch.dsl.ir import Const, Program, Var
from optsearch.dsl.ops import OPS
from optsearch.dsl.printer import format_statement, print_program

DEFAULT_LR = 1e-3
EPS_MAX = 1e-3  # the largest constant still read as an epsilon


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
    for r in ("weight_decay", "eps"):  # one argument each; further values become plain constants
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
    for r in ("eps", "weight_decay", "constant"):
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

_RESERVED = frozenset({
    "torch", "Tensor", "Optimizer", "float", "len", "zip", "enumerate", "range", "list", "self",
    "params", "grads", "steps", "group", "state", "p", "loss", "closure", "foreach", "maximize",
    "impl", "i", "t", "lr", "betas", "beta", "momentum", "eps", "weight_decay", "defaults", "step_w",
})
_SUFFIXES = ("_i", "_state", "_all", "_new", "_v", "_global")


def _python_names(program: Program, constants: Constants) -> dict[str, str]:
    """Program variable -> Python name: its own, unless generated code uses that name itself.

    A statement assigning `lr` gets its own name too (key `"=lr"`): the plain path's loop
    shares `lr` between parameters, so it must never be rebound there.
    """
    taken = set(program.params) | {s.target for s in program.body}
    reserved = _RESERVED | {n for h in constants.hyper for n in h.code_names}

    def rename(name: str) -> str:
        new, k = f"{name}_v", 1
        while new in taken or new in reserved:
            new, k = f"{name}_v{k}", k + 1
        taken.add(new)
        return new

    out: dict[str, str] = {}
    for name in dict.fromkeys(program.params + tuple(s.target for s in program.body)):
        clash = name in reserved or keyword.iskeyword(name) or name.startswith("_") or name.endswith(_SUFFIXES)
        out[name] = rename(name) if clash and name not in ("w", "g", "lr", "step") else name
    if any(s.target == "lr" for s in program.body):
        out["=lr"] = rename("lr")
    return out


def strip_parens(text: str) -> str:
    """`(a + b)` -> `a + b` when the outer parentheses enclose everything."""
    if not (text.startswith("(") and text.endswith(")")):
        return text
    depth = 0
    for k, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and k < len(text) - 1:
            return text
    return text[1:-1]


def format_expr(op_name: str, parts: list[tuple[str, bool]]) -> tuple[str, bool]:
    """The op's per-tensor `expr` over `(text, is_number)` arguments -> `(text, is_number)`.

    A Python number goes in as is where the op accepts one; elsewhere it becomes a 0-d tensor
    like the first tensor argument (`_scalar(x, like)`), or a float64 one when every argument is
    a number, so the math keeps IEEE semantics (`1 / 0` is inf, not an exception). A statement
    over numbers only gives a number again.
    """
    op = OPS[op_name]
    like = next((t for t, n in parts if not n), None)
    numbers_only = like is None
    args = [(f"_scalar({t})" if numbers_only else f"_scalar({t}, {like})")
            if n and (numbers_only or k not in op.number_args) else t for k, (t, n) in enumerate(parts)]
    text = op.expr.format(*args)
    if numbers_only and op.kind == "elementwise":
        return f"float({text})", True
    return text, False


@dataclass
class _Codegen:
    """What both code paths need to know about the program."""

    program: Program
    a: Analysis
    constants: Constants
    names: dict[str, str]
    live: list[int]
    uses_step: bool
    state: tuple[str, ...]                  # live state, signature order
    finals: dict[str, object]               # state -> the source of its new value

    @classmethod
    def of(cls, program: Program, a: Analysis, constants: Constants) -> "_Codegen":
        live = sorted(a.live)
        uses_step = any(r == "step" for i in live for r in a.reads[i])
        finals = {s: a.outputs[1 + program.state.index(s)] for s in a.live_state}
        return cls(program, a, constants, _python_names(program, constants), live, uses_step,
                   tuple(a.live_state), finals)

    def name(self, src) -> str:
        """Python name of a value: a statement's target or an input."""
        if isinstance(src, int):
            target = self.program.body[src].target
            return self.names["=lr" if target == "lr" else target]
        return self.names[src]

    def operand(self, i: int, pos: int) -> tuple[object, str]:
        """(source or None for a constant, text) of argument `pos` of statement `i`."""
        src = self.a.reads[i][pos]
        return (None, self.constants.code[(i, pos)]) if src is None else (src, self.name(src))

    def named_statement(self, i: int) -> str:
        """Statement `i` as program text, constants replaced by their hyperparameter names."""
        s = self.program.body[i]
        args = tuple(Var(self.constants.code[(i, k)]) if isinstance(arg, Const) else arg
                     for k, arg in enumerate(s.args))
        return format_statement(replace(s, args=args))

    def signature(self, per_tensor: bool) -> list[str]:
        lists = ["params", "grads"] if per_tensor else ["w", "g"]
        lists += [f"{self.names[s]}_state" if per_tensor else self.names[s] for s in self.state]
        lists += ["steps"] if self.uses_step else []
        return lists + ["*", "lr", *(n for h in self.constants.hyper for n in h.code_names), "maximize"]


# ---------------------------------------------------------------------------------------------
# The plain path: one parameter tensor at a time, one line per statement.

def _single_tensor(cg: _Codegen, fn: str) -> list[str]:
    body, a = cg.program.body, cg.a
    number: dict[object, bool] = {"w": False, "g": False, "lr": True, "step": False}
    number.update({s: False for s in cg.program.state})
    for i in cg.live:
        number[i] = OPS[body[i].op].kind == "elementwise" and all(
            number[r] if r is not None else True for r in a.reads[i])

    # A global op needs its argument for every tensor first: it splits the loop into stages.
    # Values crossing stages are kept in lists (`x_all`); global values live outside the loops
    # under a name no loop rebinds.
    stages: list[list[int]] = [[]]
    glob: list[int] = []
    for i in cg.live:
        if OPS[body[i].op].kind == "global":
            glob.append(i)
            stages.append([])
        else:
            stages[-1].append(i)
    stage_of = {i: k for k, st in enumerate(stages) for i in st}
    update, finals = a.outputs[0], cg.finals
    reads_in = [[r for i in st for r in a.reads[i] if r is not None] for st in stages]
    reads_in[-1] += [update, *finals.values()]
    for k, i in enumerate(glob):  # the global op between stages k and k + 1 reads stage <= k
        reads_in[k].extend(r for r in a.reads[i] if r is not None and stage_of.get(r, -1) < k)
    crossing = [i for k, st in enumerate(stages) for i in st
                if any(i in reads_in[j] for j in range(k + 1, len(stages))) or any(i in a.reads[j] for j in glob)]
    text = {src: cg.name(src) for src in cg.live}
    counts = Counter(cg.name(i) for i in crossing)
    listed = {i: f"{cg.name(i)}_all" + (str(i) if counts[cg.name(i)] > 1 else "") for i in crossing}
    assigned = {cg.name(i) for st in stages for i in st}
    for i in glob:
        if text[i] in assigned or sum(cg.name(j) == text[i] for j in glob) > 1:
            text[i] = f"{cg.name(i)}_global{i}"
    list_of = {"w": "params", "g": "grads", **{s: f"{cg.names[s]}_state" for s in cg.program.state}}

    lines = [*_wrap(f"def {fn}(", cg.signature(per_tensor=True), "):"),
             '    """The update, one parameter tensor at a time (the plain path)."""']
    if any("g" in rs for rs in reads_in):
        lines += ["    if maximize:", "        grads = [-grad for grad in grads]"]
    for k, stage in enumerate(stages):
        lines += [f"    {listed[i]} = []" for i in stage if i in listed]
        if stage or k == len(stages) - 1:
            lines.append("    for i, w in enumerate(params):")
            for r in dict.fromkeys(r for r in reads_in[k] if r != "w" and stage_of.get(r) != k):
                if r == "step":  # in the parameter's dtype, as the program computes
                    lines.append("        step = steps[i].to(w)")
                elif r in list_of:
                    lines.append(f"        {cg.name(r)} = {list_of[r]}[i]")
                elif isinstance(r, int) and r in listed:
                    lines.append(f"        {cg.name(r)} = {listed[r]}[i]")
            for i in stage:
                parts = [(t if src is None else text.get(src, t), number[src] if src is not None else True)
                         for src, t in (cg.operand(i, p) for p in range(len(body[i].args)))]
                lines.append(f"        {text[i]} = {strip_parens(format_expr(body[i].op, parts)[0])}")
            lines += [f"        {listed[i]}.append({text[i]})" for i in stage if i in listed]
        if k < len(glob):
            i = glob[k]
            src = a.reads[i][0]
            lines.append(f"    {text[i]} = {OPS[body[i].op].expr.format(listed.get(src) or list_of[src])}")
    # The end: the parameter, then the state; a value whose memory changes first is copied.
    new_name = {}
    for s, f in finals.items():
        if f == "w" or (f in cg.program.state and f != s):
            new_name[s] = f"{cg.names[s]}_new"
            lines.append(f"        {new_name[s]} = {cg.name(f)}.clone()")
    w_rebound = any(body[i].target == "w" for i in cg.live)
    lines.append(f"        {'params[i]' if w_rebound else 'w'}.sub_({text.get(update, cg.name(update))})")
    for s, f in finals.items():
        if f != s:
            lines.append(f"        {cg.names[s]}_state[i].copy_({new_name.get(s, text.get(f, cg.name(f)))})")
    return lines


# ---------------------------------------------------------------------------------------------
# The fast path: every value is a list with one tensor per parameter, every statement one
# `torch._foreach_*` call, written in place into memory whose value is not needed any more.

class _ForeachWriter:
    """Writes `_multi_tensor_*`: kinds, fusions, liveness and buffers, then the lines.

    Kinds: `list` (a tensor per parameter), `num` (a Python number), `scalars` (a 0-d tensor
    per parameter: reductions, `step`), `tensor0` (one 0-d tensor: global ops). Buffers: the
    memory a list lives in: `params` and `grads` are never written by the program, a state's
    buffer only by the statements that compute its new value, temporaries when dead.
    """

    def __init__(self, cg: _Codegen):
        self.cg, self.body, self.a = cg, cg.program.body, cg.a
        self.END = len(self.body)
        self.update = cg.a.outputs[0]
        kind = {"w": "list", "g": "list", "lr": "num", "step": "scalars"}
        kind.update({s: "list" for s in cg.program.state})
        for i in cg.live:
            op = OPS[self.body[i].op]
            ks = {kind[r] if r is not None else "num" for r in self.a.reads[i]}
            kind[i] = {"reduction": "scalars", "global": "tensor0"}.get(op.kind) or next(
                k for k in ("list", "scalars", "tensor0", "num") if k in ks)
        self.kind = kind
        self.readers: dict[object, list[int]] = {}
        for i in cg.live:
            for r in self.a.reads[i]:
                self.readers.setdefault(r, []).append(i)
        self.end_reads = [self.update, *cg.finals.values()]
        self.absorbed: dict[int, int] = {}     # statement -> position where it is computed
        self.squares: dict[int, int] = {}      # interp/add -> the square it absorbs
        self.tail: dict | None = None
        self._plan_squares()
        self._plan_tail()
        self.uses: dict[object, list[int]] = {}
        for i in cg.live:
            for r in self.a.reads[i]:
                self.uses.setdefault(r, []).append(self.absorbed.get(i, i))
        for r in self.end_reads:
            self.uses.setdefault(r, []).append(self.END)
        self.destined = self._chains()
        self.buf = {"w": "params", "g": "grads", **{s: f"state:{s}" for s in cg.program.state}}
        self.held = {b: src for src, b in self.buf.items()}
        self.lines: list[str] = []

    # -- planning ---------------------------------------------------------------------------

    def text(self, src) -> str:
        return "step_w" if src == "step" else self.cg.name(src)

    def n_reads(self, src) -> int:
        return len(self.readers.get(src, [])) + self.end_reads.count(src)

    def _stable(self, src, start: int, stop: int, skip=()) -> bool:
        """Whether `src`'s Python name still means `src` up to position `stop` (statements in
        `skip` are folded into the final write, so they bind no name)."""
        name = self.text(src)
        return not any(self.cg.name(e) == name for e in self.cg.live if start < e < stop and e not in skip)

    def _plan_squares(self) -> None:
        """`v = interp(square(g), v, b)` -> `v *= b; v += (1 - b) * g * g` (no temporary)."""
        for j in self.cg.live:
            if self.body[j].op != "square" or self.kind[j] != "list" or len(self.readers.get(j, [])) != 1 \
                    or self.n_reads(j) != 1:
                continue
            i = self.readers[j][0]
            if i in self.squares:
                continue
            pos = self.a.reads[i].index(j)
            op, reads = self.body[i].op, self.a.reads[i]
            ok = (op == "interp" and pos < 2 and self._kind_at(i, 2) == "num"
                  and self.kind[reads[1 - pos]] == "list") or (op == "add" and self.kind[reads[1 - pos]] == "list")
            if ok and self._stable(self.a.reads[j][0], j, i):
                self.absorbed[j], self.squares[i] = i, j

    def _kind_at(self, i: int, pos: int) -> str:
        r = self.a.reads[i][pos]
        return "num" if r is None else self.kind[r]

    def _only_use(self, src, op: str) -> bool:
        return (isinstance(src, int) and src in self.a.live and src not in self.absorbed
                and self.body[src].op == op and self.n_reads(src) == 1)

    def _plan_tail(self) -> None:
        """Fold the end of the update into the parameter write:
        `w -= lr * (m / d + w * wd)` -> `w *= 1 - lr * wd; w += -lr * m / d` (addcdiv)."""
        a, u = self.a, self.update
        t: dict = {"scale": None, "decay": None, "div": None, "coef": None, "core": u}
        taken: list[int] = []
        if self._only_use(u, "mul") and self.n_reads(u) == 1:
            kinds = [self._kind_at(u, 0), self._kind_at(u, 1)]
            if sorted(kinds) == ["list", "num"]:
                k = kinds.index("list")
                t["core"], t["scale"] = a.reads[u][k], self.cg.operand(u, 1 - k)[1]
                taken.append(u)
        core = t["core"]
        if taken and self._only_use(core, "add"):
            for k in (0, 1):
                y, d = a.reads[core][k], a.reads[core][1 - k]
                if (self._only_use(d, "mul") and "w" in a.reads[d] and y not in (None, "w")
                        and self.kind[y] == "list"):
                    c = next(p for p in (0, 1) if a.reads[d][p] != "w")
                    if self._kind_at(d, c) == "num":
                        t["decay"], t["core"] = self.cg.operand(d, c)[1], y
                        taken += [core, d]
                        break
        core = t["core"]
        if self._only_use(core, "div") and all(self._kind_at(core, k) == "list" for k in (0, 1)):
            n, d = a.reads[core]
            taken.append(core)
            if (self._only_use(n, "bias_correct") and a.reads[n][2] == "step" and a.reads[n][1] is None
                    and self.cg.constants.code[(n, 1)] in self.cg.constants.betas and self._kind_at(n, 0) == "list"):
                t["coef"] = self.cg.constants.code[(n, 1)]
                taken.append(n)
                n = a.reads[n][0]
            t["div"] = (n, d)
        if not taken:
            return
        leaves = list(t["div"]) if t["div"] else [t["core"]]
        if t["decay"] and "w" in leaves:
            return
        if all(self._stable(r, i, self.END, taken) for i in taken for r in a.reads[i]
               if r is not None and r not in taken):
            self.tail = t
            self.absorbed.update({i: self.END for i in taken})

    def _self_candidates(self, i: int) -> list:
        """Arguments whose memory statement `i` could overwrite with its result."""
        s, reads = self.body[i], self.a.reads[i]
        op = OPS[s.op]
        if i in self.absorbed or self.kind[i] != "list" or op.kind != "elementwise":
            return []
        cands = []
        if op.foreach or s.op == "bias_correct":
            cands.append(reads[0])
            if op.commutative or (s.op == "interp" and self._kind_at(i, 2) == "num"):
                cands.append(reads[1])
        return [c for c in cands if c is not None and self.kind[c] == "list" and c not in self.absorbed]

    def _chains(self) -> dict[int, str]:
        """Statements allowed to write into a state's memory: those whose result, through a
        chain of in-place statements, becomes that state's new value."""
        destined: dict[int, str] = {}
        for s, f in self.cg.finals.items():
            chain, cur = [], f
            while isinstance(cur, int) and cur not in destined:
                cands = self._self_candidates(cur)
                chain.append(cur)
                if s in cands:
                    destined.update({c: s for c in chain})
                    break
                nxt = [c for c in cands if isinstance(c, int) and self.n_reads(c) == 1]
                if not nxt:
                    break
                cur = nxt[0]
        return destined

    # -- emission ---------------------------------------------------------------------------

    def writable(self, src, pos: float, i: int) -> bool:
        b = self.buf.get(src)
        if b is None or b in ("params", "grads") or self.held.get(b) != src or max(self.uses[src]) > pos:
            return False
        return b.startswith("tmp:") or self.destined.get(i) == b[len("state:"):]

    def emit(self, line: str, comment: str | None = None) -> None:
        """One line of code; the program statement it computes goes after it, or above if long."""
        if comment and len(line) + len(comment) > 92:
            self.lines.append(f"    # {comment}")
        self.lines.append(f"    {line}" + (f"  # {comment}" if comment and len(line) + len(comment) <= 92 else ""))

    def _result(self, i: int, line: str, comment: str, inplace_of=None) -> None:
        """Emit `line` computing statement `i`; in place into `inplace_of`'s memory, or fresh."""
        target = self.cg.name(i)
        if inplace_of is None:
            self.emit(f"{target} = {line}", comment)
            self.buf[i] = f"tmp:{i}"
        else:
            self.emit(line, comment)
            if self.text(inplace_of) != target:
                self.emit(f"{target} = {self.text(inplace_of)}")
            self.buf[i] = self.buf[inplace_of]
        self.held[self.buf[i]] = i

    def _comprehension(self, i: int) -> str:
        """`[expr for x_i, y_i in zip(x, y)]`: the per-tensor `expr`, one tensor at a time."""
        iterated: dict[str, str] = {}
        parts = []
        for src, text in (self.cg.operand(i, k) for k in range(len(self.body[i].args))):
            kd = "num" if src is None else self.kind[src]
            if kd in ("list", "scalars"):
                text = self.text(src)
                iterated[text] = f"{text}_i"
                parts.append((iterated[text], False))
            else:
                parts.append((text, kd == "num"))
        expr = strip_parens(format_expr(self.body[i].op, parts)[0])
        if len(iterated) == 1:
            (lst, el), = iterated.items()
            return f"[{expr} for {el} in {lst}]"
        return f"[{expr} for {', '.join(iterated.values())} in zip({', '.join(iterated)})]"

    def statement(self, i: int, pos: float | None = None) -> None:
        pos = i if pos is None else pos
        s, op, cg = self.body[i], OPS[self.body[i].op], self.cg
        operands = [(src, self.text(src) if src is not None else text)
                    for src, text in (cg.operand(i, k) for k in range(op.arity))]
        comment = cg.named_statement(i)
        if op.kind == "global":
            return self._result(i, op.expr.format(operands[0][1]), comment)
        if op.kind == "reduction":
            line = op.foreach.format(*(t for _, t in operands)) if op.foreach else self._comprehension(i)
            return self._result(i, line, comment)
        if self.kind[i] == "num":
            parts = [(t, src is None or self.kind[src] == "num") for src, t in operands]
            return self._result(i, strip_parens(format_expr(s.op, parts)[0]), comment)
        if self.kind[i] != "list":
            parts = [(t, src is None or self.kind[src] == "num") for src, t in operands]
            line = format_expr(s.op, parts)[0] if self.kind[i] == "tensor0" else self._comprehension(i)
            return self._result(i, strip_parens(line), comment)
        if i in self.squares and self._fused_square(i, pos, comment):
            return
        if i in self.squares:  # could not fuse after all: compute the square here, before `i` reads
            self.statement(self.squares[i], pos - 0.5)
        if s.op == "bias_correct" and self._bias_correct(i, pos, operands, comment):
            return
        arrangements = [operands]
        if op.commutative:
            arrangements.append(operands[::-1])
        if s.op == "interp" and self._kind_at(i, 2) == "num":
            arrangements.append([operands[1], operands[0], (None, f"1 - {operands[2][1]}")])

        def valid(arr) -> bool:
            return op.foreach is not None and all(
                (src is not None and self.kind[src] == "list")
                or (k in op.foreach_scalars and (src is None or self.kind[src] != "list"))
                for k, (src, _) in enumerate(arr)) and arr[0][0] is not None

        arrangements = [arr for arr in arrangements if valid(arr)]
        if not arrangements:
            return self._result(i, self._comprehension(i), comment)
        writable = [arr for arr in arrangements if self.writable(arr[0][0], pos, i)]
        # Prefer writing into the state this value becomes: no copy at the end.
        best = next((arr for arr in writable if self.buf[arr[0][0]] == f"state:{self.destined.get(i)}"),
                    writable[0] if writable else None)
        arr = best or arrangements[0]
        texts = [f"[{t}] * len({arr[0][1]})" if src is not None and self.kind[src] == "tensor0" else t
                 for src, t in arr]
        if best is None:
            return self._result(i, op.foreach.format(*texts), comment)
        self._result(i, op.foreach.replace("(", "_(", 1).format(*texts), comment, inplace_of=arr[0][0])

    def _bias_correct(self, i: int, pos: float, operands, comment: str) -> bool:
        """`x / (1 - beta ** step)` with a validated beta: one division by a list of numbers."""
        (x, xt), (b, bt), (st, _) = operands
        if b is not None or bt not in self.cg.constants.betas or st != "step" or self.kind[x] != "list":
            return False
        denominators = f"[1 - {bt} ** step.item() for step in steps]"
        if self.writable(x, pos, i):
            self._result(i, f"torch._foreach_div_({xt}, {denominators})", comment, inplace_of=x)
        else:
            self._result(i, f"torch._foreach_div({xt}, {denominators})", comment)
        return True

    def _fused_square(self, i: int, pos: float, comment: str) -> bool:
        j = self.squares[i]
        x, xt = self.a.reads[j][0], self.text(self.a.reads[j][0])
        k = self.a.reads[i].index(j)
        acc = self.a.reads[i][1 - k]
        if not self.writable(acc, pos, i) or self.buf.get(x) == self.buf[acc]:
            return False
        at = self.text(acc)
        comment = f"{self.cg.named_statement(j)}; {comment}"
        if self.body[i].op == "interp":
            b = self.cg.operand(i, 2)[1]
            keep, add = (b, f"1 - {b}") if k == 0 else (f"1 - {b}", b)
            self.emit(f"torch._foreach_mul_({at}, {keep})", comment)
            self._result(i, f"torch._foreach_addcmul_({at}, {xt}, {xt}, {add})", None, inplace_of=acc)
        else:
            self._result(i, f"torch._foreach_addcmul_({at}, {xt}, {xt})", comment, inplace_of=acc)
        return True

    def write(self, fn: str) -> list[str]:
        cg = self.cg
        head = [*_wrap(f"def {fn}(", cg.signature(per_tensor=False), "):"),
                '    """The update over lists of tensors (the fast path). Every name is a list with one',
                "    tensor per parameter; a result may overwrite memory whose value is not needed any more",
                '    (never a gradient or a parameter before the final write)."""']
        if "g" in self.uses:
            self.emit("if maximize:")
            self.emit("    g = torch._foreach_neg(g)")
        for i in cg.live:
            if i not in self.absorbed:
                self.statement(i)
        # The end: copies of values whose memory changes next, the parameter, then the state.
        w_rebound = any(self.body[i].target == "w" for i in cg.live)
        params = "params" if w_rebound else "w"
        handles = ["params = w"] if w_rebound else []
        copies = []
        for s, f in cg.finals.items():
            b = self.buf[f]
            if b == f"state:{s}":
                continue
            src = self.text(f)
            if b == "params" or b.startswith("state:"):
                src = f"{cg.names[s]}_new"
                self.emit(f"{src} = [t.clone() for t in {self.text(f)}]")
            handles.append(f"{cg.names[s]}_state = {cg.names[s]}")
            copies.append(f"torch._foreach_copy_({cg.names[s]}_state, {src})")
        self._write_tail(params)
        for line in copies:
            self.emit(line)
        if any("step_w" in line for line in self.lines):  # `step` in the dtype of each parameter
            handles.append("step_w = [step.to(w_i) for step, w_i in zip(steps, w)]")
        return head + [f"    {h}" for h in handles] + self.lines

    def _write_tail(self, params: str) -> None:
        t = self.tail
        if t is None:
            return self.emit(f"torch._foreach_sub_({params}, {self.text(self.update)})", "w = w - update")
        self.lines.append("    # w = w - update, where")
        self.lines += [f"    #     {self.cg.named_statement(i)}" for i in sorted(self.absorbed)
                       if self.absorbed[i] == self.END]
        scale = t["scale"]
        if t["decay"]:
            factor = f"1 - {scale} * {t['decay']}" if scale else f"1 - {t['decay']}"
            self.emit(f"torch._foreach_mul_({params}, {factor})")
        if t["div"]:
            n, d = (self.text(r) for r in t["div"])
            if t["coef"]:
                value = f"[-{scale or 1} / (1 - {t['coef']} ** step.item()) for step in steps]"
            else:
                value = f"-{scale}" if scale else "-1.0"
            self.emit(f"torch._foreach_addcdiv_({params}, {n}, {d}, {value})")
        elif scale:
            self.emit(f"torch._foreach_add_({params}, {self.text(t['core'])}, alpha=-{scale})")
        else:
            self.emit(f"torch._foreach_sub_({params}, {self.text(t['core'])})")


# ---------------------------------------------------------------------------------------------
# The module

_ROLE_DOC = {
    "beta": "coefficient of a moving average, decay or bias correction",
    "eps": "term added to a denominator for numerical stability",
    "weight_decay": "decoupled weight decay",
    "constant": "a constant of the program",
}
_VALIDATION = {  # role -> (condition on x, message); as torch.optim words them
    "eps": ("0.0 <= {x}", "Invalid epsilon value: {{{x}}}"),
    "weight_decay": ("0.0 <= {x}", "Invalid weight_decay value: {{{x}}}"),
}
_HELPERS = {
    "_scalar(": '''def _scalar(x: float, like: Tensor | None = None) -> Tensor:
    """A number as a 0-d tensor in `like`'s dtype and device (float64 without `like`), for ops
    that need tensors and so that scalar math keeps IEEE semantics (1 / 0 is inf)."""
    if like is None:
        return torch.tensor(x, dtype=torch.float64)
    return torch.as_tensor(x, dtype=like.dtype, device=like.device)''',
}


def class_name_for(program: Program) -> str:
    """The default class name: `sgd_momentum` -> `SgdMomentum`."""
    return "".join(part[:1].upper() + part[1:] for part in program.name.split("_") if part) or "Exported"


def export_program(program: Program, class_name: str | None = None) -> str:
    """The source of a standalone module (torch only) with `program` as an Optimizer subclass.

    Raises `ProgramError` if the program is invalid, `OptsearchError` for a bad class name.
    """
    a = check(program)
    cls = class_name or class_name_for(program)
    if not cls.isidentifier() or keyword.iskeyword(cls) or cls in ("torch", "Tensor", "Optimizer") \
            or cls.startswith("_"):
        raise OptsearchError(f"the class name must be a public Python identifier, got {cls!r}")
    constants = name_constants(program, a)
    cg = _Codegen.of(program, a, constants)
    single, multi = f"_single_tensor_{program.name}", f"_multi_tensor_{program.name}"
    functions = "\n".join(_single_tensor(cg, single)) + "\n\n\n" + "\n".join(_ForeachWriter(cg).write(multi))
    parts = [_header(program, cls), _class(cg, cls, single, multi), _FOREACH_DEFAULT]
    parts += [h for key, h in _HELPERS.items() if key in functions]
    source = "\n\n\n".join(parts + [functions]) + "\n"
    compile(source, f"<export of {program.name}>", "exec")  # an internal error, if it fails
    return source


def write_export(program: Program, path: str | Path, class_name: str | None = None) -> Path:
    """Write `export_program(program, class_name)` to `path` (folders created); returns the path."""
    path = Path(path)
    source = export_program(program, class_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return path


def _header(program: Program, cls: str) -> str:
    return f'''"""{cls}: the optsearch program `{program.name}` as a torch optimizer.

Generated by `optsearch export`. It needs torch and nothing else: copy it into any project.
The update rule, its hyperparameters and the program it came from are on the class.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = ["{cls}"]'''


_FOREACH_DEFAULT = '''def _foreach_by_default(params: list[Tensor]) -> bool:
    """foreach=None means foreach when all tensors share one CPU or CUDA device and dtype."""
    first = params[0]
    return first.device.type in ("cpu", "cuda") and all(
        p.device == first.device and p.dtype == first.dtype for p in params)'''


def _docstring(cg: _Codegen) -> list[str]:
    import textwrap

    p, a = cg.program, cg.a
    out = [f"The optsearch program ``{p.name}`` as a ``torch.optim.Optimizer``.", "",
           "For every parameter tensor ``w`` with gradient ``g`` a step computes (state starts at",
           "zero; ``step`` counts the updates of this tensor from 1)::", ""]
    out += [f"    {cg.named_statement(i)}" for i in cg.live]
    out += ["    w = w - " + p.returns[0], ""]
    if any(s not in cg.state for s in p.state):
        out += ["State the update never reads is not kept: " + ", ".join(s for s in p.state if s not in cg.state)
                + ".", ""]
    used = list(dict.fromkeys(p.body[i].op for i in cg.live))
    out += ["where::", ""]
    width = max((len(OPS[o].signature) for o in used if OPS[o].summary != OPS[o].signature), default=0)
    out += [f"    {OPS[o].signature:<{width}}  {OPS[o].summary}" for o in used
            if OPS[o].summary != OPS[o].signature] + [""]
    if any(OPS[o].kind == "global" for o in used):
        out += [f"``{', '.join(o for o in used if OPS[o].kind == 'global')}`` spans all parameters of a param "
                "group that have a gradient, together.", ""]
    out += ["The program, as searched::", ""]
    out += [f"    {line}" for line in print_program(p).splitlines()] + ["", "Args:"]

    def arg(name: str, text: str) -> None:
        out.extend(textwrap.wrap(f"{name}: {text}", 92, initial_indent="    ", subsequent_indent="        "))

    arg("params", "iterable of parameters or dicts defining parameter groups.")
    arg("lr", f"learning rate (default: {DEFAULT_LR!r}).")
    for h in cg.constants.hyper:
        where = "; ".join(f"{n} in " + ", ".join(f"``{cg.named_statement(i)}``" for i in uses)
                          for n, uses in zip(h.code_names, h.uses))
        arg(h.arg, f"{_ROLE_DOC[h.role]}: {where} (default: {h.default}).")
    arg("maximize", "maximize the objective instead of minimizing it (default: False).")
    arg("foreach", "use the ``torch._foreach_*`` path; None (default) uses it when all parameters of a "
                   "group share one CPU or CUDA device and dtype.")
    return out


def _wrap(opening: str, args: list[str], closing: str, width: int = 100) -> list[str]:
    """`opening + args + closing`, continued under the opening parenthesis when too long."""
    lines, indent = [opening], " " * len(opening)
    for k, arg in enumerate(args):
        piece = arg + (", " if k < len(args) - 1 else closing)
        if len(lines[-1]) + len(piece.rstrip()) > width and lines[-1].strip() != opening.strip():
            lines[-1] = lines[-1].rstrip()
            lines.append(indent)
        lines[-1] += piece
    return lines


def _class(cg: _Codegen, cls: str, single: str, multi: str) -> str:
    hyper = cg.constants.hyper
    sig = ["self", "params", f"lr: float = {DEFAULT_LR!r}"]
    for h in hyper:
        typ = f"tuple[{', '.join(['float'] * len(h.values))}]" if h.arg == "betas" else "float"
        sig.append(f"{h.arg}: {typ} = {h.default}")
    sig += ["*", "maximize: bool = False", "foreach: bool | None = None"]
    lines = [f"class {cls}(Optimizer):", '    r"""' + _docstring(cg)[0]]
    lines += [f"    {line}" if line else "" for line in _docstring(cg)[1:]] + ['    """', ""]
    lines += [*_wrap("    def __init__(", sig, "):"),
              "        if not 0.0 <= lr:", '            raise ValueError(f"Invalid learning rate: {lr}")']
    for h in hyper:
        if h.arg == "betas":
            n = len(h.values)
            lines += [f"        if len(betas) != {n}:",
                      f'            raise ValueError(f"Invalid betas: expected {n} values, got {{betas!r}}")',
                      "        for index, beta in enumerate(betas):",
                      "            if not 0.0 <= beta < 1.0:",
                      '                raise ValueError(f"Invalid beta parameter at index {index}: {beta}")']
        elif h.role == "beta":
            lines += [f"        if not 0.0 <= {h.arg} < 1.0:",
                      f'            raise ValueError(f"Invalid {h.arg} value: {{{h.arg}}}")']
        elif h.role in _VALIDATION:
            cond, msg = _VALIDATION[h.role]
            lines += [f"        if not {cond.format(x=h.arg)}:",
                      f'            raise ValueError(f"{msg.format(x=h.arg)}")']
    keys = ["lr"] + [h.arg for h in hyper] + ["maximize", "foreach"]
    lines += [*_wrap("        defaults = dict(", [f"{k}={k}" for k in keys], ")"),
              "        super().__init__(params, defaults)", "",
              "    def __setstate__(self, state):",
              "        super().__setstate__(state)",
              "        for group in self.param_groups:",
              '            group.setdefault("maximize", False)',
              '            group.setdefault("foreach", None)', "",
              "    @torch.no_grad()",
              "    def step(self, closure=None):",
              '        """Perform one optimization step; `closure` re-evaluates the model and returns the loss."""',
              "        loss = None",
              "        if closure is not None:",
              "            with torch.enable_grad():",
              "                loss = closure()",
              "        for group in self.param_groups:"]
    state_lists = [f"{cg.names[s]}_state" for s in cg.state]
    lists = ["params", "grads"] + state_lists + ["steps"]
    lines += [f"            {', '.join(lists)} = {', '.join(['[]'] * len(lists))}",
              '            for p in group["params"]:',
              "                if p.grad is None:",
              "                    continue",
              "                if p.grad.is_sparse:",
              f'                    raise RuntimeError("{cls} does not support sparse gradients")',
              "                state = self.state[p]",
              "                if not state:",
              '                    state["step"] = torch.tensor(0.0, dtype=torch.float64)']
    lines += [f'                    state["{s}"] = torch.zeros_like(p, memory_format=torch.preserve_format)'
              for s in cg.state]
    lines += ['                state["step"] += 1', "                params.append(p)", "                grads.append(p.grad)"]
    lines += [f'                {name}.append(state["{s}"])' for name, s in zip(state_lists, cg.state)]
    lines += ['                steps.append(state["step"])', "            if not params:", "                continue"]
    kwargs = ['lr=float(group["lr"])']
    for h in hyper:
        if h.arg == "betas":
            lines.append(f'            {", ".join(h.code_names)} = group["betas"]')
            kwargs += [f"{n}={n}" for n in h.code_names]
        else:
            kwargs.append(f'{h.arg}=group["{h.arg}"]')
    kwargs.append('maximize=group["maximize"]')
    call_lists = ["params", "grads"] + state_lists + (["steps"] if cg.uses_step else [])
    lines += ['            foreach = group["foreach"]',
              "            if foreach is None:",
              "                foreach = _foreach_by_default(params)",
              f"            impl = {multi} if foreach else {single}",
              *_wrap("            impl(", call_lists + kwargs, ")"),
              "        return loss"]
    return "\n".join(lines)
