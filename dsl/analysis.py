"""Abstract execution: type and arity checks, liveness, the canonical form and its hash.

Nothing here touches tensors. `check` rejects invalid programs with a `ProgramError` naming
the line; `canonicalize` maps every program onto one representative of its class (dead code
removed, independent statements ordered, commutative arguments sorted, variables renamed),
so two programs that compute the same expressions share one `structural_hash`.

Types: `tensor` (shaped like the parameter), `scalar` (one number per tensor or per copy), and
for factored state `row` and `col` (one number per row / column of the parameter seen as a
matrix; see the end of `ops.py`). Elementwise results broadcast (`join`); a state variable's type
is inferred from the value it returns as (`check`). Matrix ops take tensors only, and constants
where their argument type is `const`; their arguments are never reordered (not commutative).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Literal, Union

from optsearch.dsl.errors import ProgramError
from optsearch.dsl.ir import INPUTS, REQUIRED_INPUTS, Const, Operand, Program, Statement, Var
from optsearch.dsl.ops import OPS, unknown_op_message
from optsearch.dsl.printer import print_program

Type = Literal["tensor", "scalar", "row", "col"]
INPUT_TYPES: dict[str, Type] = {"w": "tensor", "g": "tensor", "lr": "scalar", "step": "scalar"}
STATE_TYPES: tuple[Type, ...] = ("tensor", "row", "col")
"""Types a state variable can have: a value per element, per row or per column of the parameter."""

# Where a value read by a statement comes from: a statement index, or a parameter's
# initial value (the input, or a state variable as it was at the start of the step).
Source = Union[int, str]


@dataclass(frozen=True)
class Analysis:
    """What abstract execution learned about a valid program."""

    types: tuple[Type, ...]          # result type of each statement
    reads: tuple[tuple[Source | None, ...], ...]  # per statement, per argument (None: a constant)
    outputs: tuple[Source, ...]      # the definitions of (update, *state) at the return
    live: frozenset[int]             # statements that can reach the update, now or in a later step
    live_state: tuple[str, ...]      # state variables whose value ever influences the update
    state_types: tuple[Type, ...] = ()  # type of each state variable, in signature order

    @property
    def dead(self) -> tuple[int, ...]:
        return tuple(i for i in range(len(self.types)) if i not in self.live)


def join(types) -> Type | None:
    """The type of an elementwise op over arguments of these types (numpy broadcasting, with a
    row as an (m, 1) and a col as a (1, n) array). `None` is a state whose type is not known yet:
    a value per element, row or column, so it absorbs scalars and yields to anything else."""
    kinds = set(types)
    if "tensor" in kinds or {"row", "col"} <= kinds:
        return "tensor"
    for t in ("row", "col", None):
        if t in kinds:
            return t
    return "scalar"


def result_type(op_name: str, arg_types) -> Type | None:
    """The type of `op_name` applied to arguments of `arg_types`."""
    op = OPS[op_name]
    if op.kind in ("factor", "matrix"):
        return op.result  # type: ignore[return-value]
    return "scalar" if op.kind != "elementwise" else join(arg_types)


def check(program: Program, path: str | None = None) -> Analysis:
    """Validate `program` and return its analysis; raises `ProgramError` with the line.

    A state variable's type is the type of the value it returns as, where its own (and other
    states') old values have that type too: the least fixed point, found by starting every state
    as "not known yet" and raising types until nothing changes (each can rise at most twice). A
    state no rule makes a row or a col is a tensor, as before factored state existed.
    """

    def fail(message: str, line: int | None) -> ProgramError:
        return ProgramError(message, path, line or None)

    missing = [p for p in REQUIRED_INPUTS if p not in program.params]
    if missing:
        raise fail(f"the signature needs the inputs {', '.join(REQUIRED_INPUTS)}; missing {', '.join(missing)}", None)
    if len(set(program.params)) != len(program.params):
        dup = sorted({p for p in program.params if program.params.count(p) > 1})
        raise fail(f"duplicate parameter name {', '.join(map(repr, dup))}", None)
    state = program.state
    state_types: dict[str, Type | None] = {s: None for s in state}
    for _ in range(3 * len(state) + 2):
        types, env = _walk(program, state_types, None)
        returned = list(program.returns[1:]) + [None] * len(state)  # a missing return is reported below
        new = {s: join([state_types[s], types.get(env.get(name))]) for s, name in zip(state, returned)}
        if new == state_types and None in new.values():
            new = {s: t or "tensor" for s, t in new.items()}
        if new == state_types:
            break
        state_types = new
    state_types = {s: t or "tensor" for s, t in state_types.items()}

    types, env, stmt_types, reads = _walk(program, state_types, fail)  # raises the first error, if any
    if len(program.returns) != 1 + len(state):
        want = ", ".join(("update",) + state)
        raise fail(f"the program must return (update, *state) = ({want}): "
                   f"{1 + len(state)} values, got {len(program.returns)}", program.return_line)
    outputs: list[Source] = []
    for k, name in enumerate(program.returns):
        if name not in env:
            raise fail(f"returned variable {name!r} is not defined", program.return_line)
        src = env[name]
        if k == 0 and types[src] != "tensor":
            raise fail(f"the update must be a tensor shaped like w, but {name!r} is a {types[src]}",
                       program.return_line)
        if k > 0 and types[src] == "scalar":
            raise fail(f"the new value of state {state[k - 1]!r} must be a tensor, a row or a col, "
                       f"but {name!r} is a scalar", program.return_line)
        assert k == 0 or types[src] == state_types[state[k - 1]], "state type inference did not converge"
        outputs.append(src)

    live, live_state = _liveness(reads, outputs, state)
    return Analysis(tuple(stmt_types), tuple(reads), tuple(outputs), live, live_state,
                    tuple(state_types[s] for s in state))  # type: ignore[misc]


def _walk(program: Program, state_types: dict[str, Type | None], fail):
    """Type the body once, given the states' types. With `fail`, raise the first error in order and
    also return per-statement types and reads; without, skip what is wrong and return
    `(types, env)` (the inference passes, whose mistakes the last, failing pass reports)."""
    env: dict[str, Source] = {p: p for p in program.params}
    types: dict[Source, Type | None] = {p: INPUT_TYPES.get(p) or state_types[p] for p in program.params}
    stmt_types: list[Type] = []
    reads: list[tuple[Source | None, ...]] = []
    for i, s in enumerate(program.body):
        if s.op not in OPS:
            if fail:
                raise fail(unknown_op_message(s.op), s.line)
            env[s.target], types[i] = i, None
            continue
        op = OPS[s.op]
        if fail and len(s.args) != op.arity:
            raise fail(f"{op.signature} takes {op.arity} argument(s), got {len(s.args)}", s.line)
        arg_sources: list[Source | None] = []
        arg_types: list[Type | None] = []
        for pos, (a, want) in enumerate(zip(s.args, op.types())):
            if isinstance(a, Var):
                if a.name not in env:
                    if fail:
                        raise fail(f"variable {a.name!r} is used before it is defined", s.line)
                    arg_sources.append(None)
                    arg_types.append(None)
                    continue
                src = env[a.name]
                t = types[src]
            else:
                src, t = None, "scalar"
            # A reduction takes any value with one number per element, row or column; an op over
            # rows and columns, or over the parameter's matrix view, needs a value shaped like the parameter.
            ok = t == "tensor" if op.kind in ("factor", "matrix") else t != "scalar"
            if fail and want == "tensor" and not ok:
                what = "a constant" if src is None else f"{format_operand_name(a)!r} is a {t}"
                why = " (a matrix op works on each parameter's matrix view)" if op.kind == "matrix" else ""
                raise fail(f"{s.op}() needs a tensor for argument {op.args[pos]!r}, but {what}{why}", s.line)
            if fail and want == "const" and src is not None:
                raise fail(f"{s.op}() needs a constant (a number) for argument {op.args[pos]!r}, "
                           f"but {format_operand_name(a)!r} is a variable", s.line)
            arg_sources.append(src)
            arg_types.append(t)
        env[s.target] = i
        types[i] = result_type(s.op, arg_types)
        stmt_types.append(types[i])  # type: ignore[arg-type]
        reads.append(tuple(arg_sources))
    if fail:
        return types, env, stmt_types, reads
    return types, env


def format_operand_name(a: Operand) -> str:
    return a.name if isinstance(a, Var) else repr(a.value)


def _liveness(reads, outputs, state) -> tuple[frozenset[int], tuple[str, ...]]:
    """Statements that reach the update, directly or through state carried to later steps."""
    live: set[int] = set()
    live_state: set[str] = set()
    work: list[Source] = [outputs[0]]
    while work:
        src = work.pop()
        if isinstance(src, int):
            if src not in live:
                live.add(src)
                work.extend(r for r in reads[src] if r is not None)
        elif src in state and src not in live_state:
            live_state.add(src)
            work.append(outputs[1 + state.index(src)])
    return frozenset(live), tuple(s for s in state if s in live_state)


def dead_statements(program: Program) -> tuple[Statement, ...]:
    a = check(program)
    return tuple(program.body[i] for i in a.dead)


def canonicalize(program: Program, analysis: Analysis | None = None) -> Program:
    """The canonical representative of `program`'s equivalence class (see module docstring).

    Values are rebuilt as an expression DAG from the outputs; identical sub-expressions merge,
    commutative arguments are sorted by structure, and statements are emitted in a fixed
    depth-first order with names `v1, v2, ...`; live state variables become `s1, s2, ...`.
    """
    a = analysis or check(program)
    state_names = {s: f"s{k + 1}" for k, s in enumerate(a.live_state)}
    params = ("w", "g", "lr") + (("step",) if reads_input(program, a, "step") else ()) + tuple(state_names.values())

    digest: dict[Source, str] = {}

    def key(src: Source) -> str:
        if src in digest:
            return digest[src]
        if isinstance(src, str):
            d = f"in:{state_names.get(src, src)}"
        else:
            s = program.body[src]
            parts = [key(r) if r is not None else _const_key(arg) for r, arg in zip(a.reads[src], s.args)]
            if OPS[s.op].commutative:
                parts.sort()
            d = hashlib.sha256(f"{s.op}({','.join(parts)})".encode()).hexdigest()
        digest[src] = d
        return d

    body: list[Statement] = []
    name_of: dict[str, str] = {}  # digest -> canonical name

    def emit(src: Source) -> str:
        if isinstance(src, str):
            return state_names.get(src, src)
        d = key(src)
        if d in name_of:
            return name_of[d]
        s = program.body[src]
        # Order commutative arguments before emitting them, so the depth-first order is canonical too.
        args = [(key(r) if r is not None else _const_key(arg), r, arg) for r, arg in zip(a.reads[src], s.args)]
        if OPS[s.op].commutative:
            args.sort(key=lambda t: t[0])
        operands = tuple(Var(emit(r)) if r is not None else Const(float(arg.value)) for _, r, arg in args)
        name = f"v{len(body) + 1}"
        body.append(Statement(name, s.op, operands))
        name_of[d] = name
        return name

    outs = [emit(a.outputs[0])]
    state = program.state
    for s in a.live_state:
        outs.append(emit(a.outputs[1 + state.index(s)]))
    return Program(program.name, params, tuple(body), tuple(outs))


def _const_key(c: Operand) -> str:
    return f"c:{float(c.value)!r}"  # type: ignore[union-attr]


def reads_input(program: Program, a: Analysis, name: str) -> bool:
    """Whether the update depends on input `name` (`g`, `step`, ...), now or through state carried
    to later steps (a live state may also be set to the input itself: `return u, g`)."""
    carried = [a.outputs[1 + program.state.index(s)] for s in a.live_state]
    return name == a.outputs[0] or name in carried or any(r == name for i in a.live for r in a.reads[i])


def structural_hash(program: Program) -> str:
    """A short hash equal for programs with the same canonical form (names do not count)."""
    canon = replace(canonicalize(program), name="program")
    return hashlib.sha256(print_program(canon).encode()).hexdigest()[:16]


def matrix_ops(program: Program, analysis: Analysis | None = None) -> tuple[str, ...]:
    """The matrix ops (kind `matrix`: over each parameter's matrix view) that live statements use,
    in order of first use; what a transform or an exporter that cannot run them asks."""
    a = analysis or check(program)
    used = (program.body[i].op for i in sorted(a.live))
    return tuple(dict.fromkeys(op for op in used if OPS[op].kind == "matrix"))


def variable_types(program: Program, analysis: Analysis | None = None) -> dict[str, Type]:
    """Type of each variable name at the end of the program (last assignment wins)."""
    a = analysis or check(program)
    out: dict[str, Type] = {**dict(zip(program.state, a.state_types)), **INPUT_TYPES}
    out = {p: out[p] for p in program.params}
    for s, t in zip(program.body, a.types):
        out[s.target] = t
    return out


__all__ = ["Analysis", "STATE_TYPES", "Type", "check", "canonicalize", "join", "matrix_ops", "result_type",
           "structural_hash", "dead_statements", "variable_types", "INPUTS"]
