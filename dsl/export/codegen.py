"""What both code paths of an exported optimizer share: the program seen by the code writers
(`Codegen`), the per-tensor text of an op (`format_expr`) and line wrapping (`wrap`)."""
from __future__ import annotations

from dataclasses import dataclass, replace

from optsearch.dsl.analysis import Analysis
from optsearch.dsl.export.names import Constants, python_names
from optsearch.dsl.ir import Const, Program, Var
from optsearch.dsl.ops import OPS
from optsearch.dsl.printer import format_statement


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


def wrap(opening: str, args: list[str], closing: str, width: int = 100) -> list[str]:
    """`opening + args + closing`, continued under the opening parenthesis when too long."""
    lines, indent = [opening], " " * len(opening)
    for k, arg in enumerate(args):
        piece = arg + (", " if k < len(args) - 1 else closing)
        if len(lines[-1]) + len(piece.rstrip()) > width and lines[-1].strip() != opening.strip():
            lines[-1] = lines[-1].rstrip()
            lines.append(indent)
        lines[-1] += piece
    return lines


@dataclass
class Codegen:
    """What both code paths (and the class calling them) need to know about the program."""

    program: Program
    a: Analysis
    constants: Constants
    names: dict[str, str]
    live: list[int]
    uses_step: bool
    state: tuple[str, ...]                  # live state, signature order
    finals: dict[str, object]               # state -> the source of its new value

    @classmethod
    def of(cls, program: Program, a: Analysis, constants: Constants) -> "Codegen":
        live = sorted(a.live)
        uses_step = any(r == "step" for i in live for r in a.reads[i])
        finals = {s: a.outputs[1 + program.state.index(s)] for s in a.live_state}
        return cls(program, a, constants, python_names(program, constants), live, uses_step,
                   tuple(a.live_state), finals)

    @property
    def w_rebound(self) -> bool:
        """Whether a live statement assigns `w`, so that `w` no longer names the parameter."""
        return any(self.program.body[i].target == "w" for i in self.live)

    def name(self, src) -> str:
        """Python name of a value: a statement's target or an input."""
        if isinstance(src, int):
            target = self.program.body[src].target
            return self.names["=lr" if target == "lr" else target]
        return self.names[src]

    def state_list(self, s: str) -> str:
        """Python name of the list holding state `s` for every parameter."""
        return self.derived(s, "state")

    def derived(self, src, suffix: str) -> str:
        """`_NAME_suffix`: a name the code writers make from a value's (`x` -> `_x_all`); the leading
        underscore keeps it apart from every program name."""
        return f"_{self.name(src)}_{suffix}"

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

    def def_lines(self, fn: str, per_tensor: bool) -> list[str]:
        """`def fn(...):` of a code path: lists of tensors, then keyword-only numbers."""
        lists = ["_params", "_grads"] if per_tensor else ["w", "g"]
        lists += [self.state_list(s) if per_tensor else self.names[s] for s in self.state]
        lists += ["_steps"] if self.uses_step else []
        hyper = [n for h in self.constants.hyper for n in h.code_names]
        return wrap(f"def {fn}(", lists + ["*", "lr", *hyper, "_maximize"], "):")
