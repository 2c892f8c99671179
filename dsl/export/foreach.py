"""The fast path of an exported optimizer (`_multi_tensor_*`): every value is a list with one
tensor per parameter, every statement one `torch._foreach_*` call.

Each result is written into memory whose value is dead (never a gradient or a parameter), and
common idioms fold into single calls: `interp` into `_foreach_lerp_`, a moving average of a
square into `mul_` + `addcmul_`, and the end of the update (`* lr`, decoupled decay, a division,
a bias correction) into the write of the parameters. A bias correction with a named beta is
computed in Python floats, as torch's Adam does.
"""
from __future__ import annotations

import re

from optsearch.dsl.export.codegen import Codegen, format_expr, strip_parens
from optsearch.dsl.ops import OPS

# Lists with a tensor per parameter: shaped like it, or like its row or col values (factored state).
_LISTS = ("list", "rows", "cols")
_LIST_OF = {"tensor": "list", "row": "rows", "col": "cols"}
_STEP_W = "_step_w"  # `step` in the dtype of each parameter: made at the top where the code reads it
_READS_STEP_W = re.compile(r"(?<!\w)_step_w(?!\w)")


def _joined(kinds: set) -> str:
    """The kind of an elementwise result over arguments of `kinds` (rows and cols broadcast)."""
    if "list" in kinds or {"rows", "cols"} <= kinds:
        return "list"
    return next(k for k in ("rows", "cols", "scalars", "tensor0", "num") if k in kinds)


def write_multi_tensor(cg: Codegen, fn: str) -> list[str]:
    """The lines of `def fn(...)`, the fast path."""
    return _ForeachWriter(cg).write(fn)


class _ForeachWriter:
    """Writes `_multi_tensor_*`: kinds, fusions, liveness and buffers, then the lines.

    Kinds: `list` (a tensor per parameter), `num` (a Python number), `scalars` (a 0-d tensor
    per parameter: reductions, `step`), `tensor0` (one 0-d tensor: global ops), `rows`/`cols` (a
    row or col value per parameter, shaped to broadcast against it: a foreach call takes them only
    beside lists of their own kind, else the statement is a comprehension). Buffers: the
    memory a list lives in: `params` and `grads` are never written by the program, a state's
    buffer only by the statements that compute its new value, temporaries when dead.
    """

    def __init__(self, cg: Codegen):
        self.cg, self.body, self.a = cg, cg.program.body, cg.a
        self.END = len(self.body)
        self.update = cg.a.outputs[0]
        kind = {"w": "list", "g": "list", "lr": "num", "step": "scalars"}
        kind.update({s: _LIST_OF[t] for s, t in zip(cg.program.state, cg.a.state_types)})
        for i in cg.live:
            op = OPS[self.body[i].op]
            ks = {kind[r] if r is not None else "num" for r in self.a.reads[i]}
            kind[i] = {"reduction": "scalars", "global": "tensor0", "factor": _LIST_OF.get(op.result or ""),
                       "matrix": "scalars" if op.result == "scalar" else "list"}.get(op.kind) or _joined(ks)
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
        self.step_w = False

    # -- planning ---------------------------------------------------------------------------

    def text(self, src) -> str:
        return _STEP_W if src == "step" else self.cg.name(src)

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
                  and self._kind_at(i, 1 - pos) == "list") or (op == "add" and self._kind_at(i, 1 - pos) == "list")
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
        self.step_w = self.step_w or _READS_STEP_W.search(line) is not None
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
            if kd in ("scalars", *_LISTS):
                text = self.text(src)
                iterated[text] = f"_{text}_i"
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
        if op.kind == "factor":
            return self._result(i, self._comprehension(i), comment)
        if op.kind == "matrix":  # lists in, a new list out: one batch per matrix shape where `foreach` says so
            line = op.foreach.format(*(t for _, t in operands)) if op.foreach else self._comprehension(i)
            return self._result(i, line, comment)
        if self.kind[i] in ("num", "tensor0"):  # one value, not one per parameter
            parts = [(t, src is None or self.kind[src] == "num") for src, t in operands]
            return self._result(i, strip_parens(format_expr(s.op, parts)[0]), comment)
        if self.kind[i] == "scalars":
            return self._result(i, strip_parens(self._comprehension(i)), comment)
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
                (src is not None and self.kind[src] == self.kind[i])
                or (k in op.foreach_scalars and (src is None or self.kind[src] not in _LISTS))
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
        denominators = f"[1 - {bt} ** _step.item() for _step in _steps]"
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
        head = [*cg.def_lines(fn, per_tensor=False),
                '    """The update over lists of tensors (the fast path). Every name is a list with one',
                "    tensor per parameter; a result may overwrite memory whose value is not needed any more",
                '    (never a gradient or a parameter before the final write)."""']
        if "g" in self.uses:
            self.emit("if _maximize:")
            self.emit("    g = torch._foreach_neg(g)")
        for i in cg.live:
            if i not in self.absorbed:
                self.statement(i)
        # The end: copies of values whose memory changes next, the parameter, then the state.
        params = "_params" if cg.w_rebound else "w"
        handles = ["_params = w"] if cg.w_rebound else []
        copies = []
        for s, f in cg.finals.items():
            b = self.buf[f]
            if b == f"state:{s}":
                continue
            src = self.text(f)
            if b == "params" or b.startswith("state:"):
                src = cg.derived(s, "new")
                self.emit(f"{src} = [_t.clone() for _t in {self.text(f)}]")
            handles.append(f"{cg.state_list(s)} = {cg.names[s]}")
            copies.append(f"torch._foreach_copy_({cg.state_list(s)}, {src})")
        self._write_tail(params)
        for line in copies:
            self.emit(line)
        if self.step_w:
            handles.append(f"{_STEP_W} = [_step.to(_w_i) for _step, _w_i in zip(_steps, w)]")
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
                value = f"[-{scale or 1} / (1 - {t['coef']} ** _step.item()) for _step in _steps]"
            else:
                value = f"-{scale}" if scale else "-1.0"
            self.emit(f"torch._foreach_addcdiv_({params}, {n}, {d}, {value})")
        elif scale:
            self.emit(f"torch._foreach_add_({params}, {self.text(t['core'])}, alpha=-{scale})")
        else:
            self.emit(f"torch._foreach_sub_({params}, {self.text(t['core'])})")
