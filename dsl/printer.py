"""IR -> program text, one op per line; `print_program(parse_program(t))` is a fixed point."""
from __future__ import annotations

from optsearch.dsl.ir import Const, Operand, Program, Statement
from optsearch.dsl.ops import OPS


def format_operand(a: Operand) -> str:
    return repr(a.value) if isinstance(a, Const) else a.name


def format_statement(s: Statement) -> str:
    op = OPS[s.op]
    args = [format_operand(a) for a in s.args]
    if op.symbol and op.arity == 1:
        return f"{s.target} = {op.symbol}{args[0]}"
    if op.symbol:
        return f"{s.target} = {args[0]} {op.symbol} {args[1]}"
    return f"{s.target} = {s.op}({', '.join(args)})"


def print_program(p: Program) -> str:
    lines = [f"def {p.name}({', '.join(p.params)}):"]
    lines += [f"    {format_statement(s)}" for s in p.body]
    lines.append(f"    return {', '.join(p.returns)}")
    return "\n".join(lines) + "\n"
