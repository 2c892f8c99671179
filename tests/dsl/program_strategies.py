"""Hypothesis strategies for random valid programs, and the equivalence-preserving edits the
canonical-form tests apply to them (renaming, reordering, swapping commutative arguments)."""
from __future__ import annotations

from dataclasses import replace

import torch
from hypothesis import strategies as st

from optsearch.dsl import OPS, CompiledProgram, Const, FlatReducer, Layout, Program, Statement, Var
from optsearch.dsl.ir import INPUTS

LOCALS = ("a", "b", "c", "d", "e", "x", "y", "z")
STATES = ("m", "v", "n")
# A smaller op set where commutative ops are common, for the canonical-form properties.
ALGEBRA = ("add", "mul", "sub", "div", "maximum", "minimum", "dot", "interp", "sign", "norm", "sqrt")
NICE_CONSTANTS = (0.0, 1.0, -1.0, 0.5, 2.0, 0.9, 0.999, 1e-08, -3.25)

constants = st.one_of(
    st.sampled_from(NICE_CONSTANTS),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
)


@st.composite
def programs(draw, max_statements: int = 10, ops: tuple[str, ...] | None = None) -> Program:
    """A random valid straight-line program over the op registry (or over `ops`)."""
    # Row and col ops are left out: this generator tracks only tensor and scalar types (a state
    # fed by `row_mean` would become a row, and could end up returned as the update).
    # tests/dsl/test_factored.py covers them.
    ops = tuple(sorted(ops or (name for name, op in OPS.items() if op.kind != "factor")))
    state = STATES[:draw(st.integers(0, len(STATES)))]
    params = ("w", "g", "lr") + (("step",) if draw(st.booleans()) else ()) + state
    types = {p: ("scalar" if p in ("lr", "step") else "tensor") for p in params}
    body, defined = [], []
    for line in range(2, 2 + draw(st.integers(1, max_statements))):
        op = OPS[draw(st.sampled_from(ops))]
        args = []
        for k, want in enumerate(op.types()):
            names = sorted(n for n, t in types.items() if want == "any" or t == "tensor")
            # Hypothesis favours small draws: making them mean "a recent value" (a tensor for
            # the first argument) gives deep programs with mostly live code.
            tensors = [n for n in defined[::-1] + ["g", "w"] if types[n] == "tensor"]
            recent = [n for n in (defined[::-1] if k else tensors) if n in names][:3]
            choice = draw(st.integers(0, 5))
            if want == "const":  # a matrix op's coefficient: always a number
                args.append(Const(draw(constants)))
            elif want == "any" and choice == 3:
                args.append(Const(draw(constants)))
            elif recent and choice < 3:
                args.append(Var(draw(st.sampled_from(recent))))
            else:
                args.append(Var(draw(st.sampled_from(names))))
        arg_types = ["scalar" if isinstance(a, Const) else types[a.name] for a in args]
        result = op.result if op.kind == "matrix" else "scalar" if op.kind != "elementwise" else (
            "tensor" if "tensor" in arg_types else "scalar")
        target = draw(st.sampled_from(LOCALS + state + ("g",)))
        types[target] = result
        defined = [n for n in defined if n != target] + [target]
        body.append(Statement(target, op.name, tuple(args), line))
    tensors = sorted(n for n, t in types.items() if t == "tensor")
    recent = [n for n in defined[::-1] if types[n] == "tensor"][:2] or tensors
    update = draw(st.sampled_from(recent))
    returns = (update,) + tuple(draw(st.sampled_from(recent if draw(st.booleans()) else tensors)) for _ in state)
    name = draw(st.sampled_from(("f", "opt", "program")))
    return Program(name, params, tuple(body), returns)


def rename(program: Program, mapping: dict[str, str]) -> Program:
    """`program` with every variable renamed by `mapping` (names not in it are kept)."""
    def n(name: str) -> str:
        return mapping.get(name, name)

    body = tuple(replace(s, target=n(s.target), args=tuple(Var(n(a.name)) if isinstance(a, Var) else a
                                                              for a in s.args)) for s in program.body)
    return replace(program, params=tuple(map(n, program.params)), body=body, returns=tuple(map(n, program.returns)))


@st.composite
def renamings(draw, program: Program) -> dict[str, str]:
    """An injective renaming of every non-input name of `program` onto fresh names."""
    names = sorted(({s.target for s in program.body} | set(program.params)) - set(INPUTS))
    fresh = draw(st.permutations([f"r{k}" for k in range(len(names) + 3)]))
    return dict(zip(names, fresh))


def _conflict(s: Statement, t: Statement) -> bool:
    """Whether `s` and `t` must keep their relative order (read/write or write/write on a name)."""
    reads_s = {a.name for a in s.args if isinstance(a, Var)}
    reads_t = {a.name for a in t.args if isinstance(a, Var)}
    return s.target in reads_t or t.target in reads_s or s.target == t.target


@st.composite
def reorderings(draw, program: Program) -> Program:
    """`program` with its statements in a random order that keeps every dependency."""
    body = program.body
    before = {j: {i for i in range(j) if _conflict(body[i], body[j])} for j in range(len(body))}
    placed: list[int] = []
    while len(placed) < len(body):
        ready = [j for j in range(len(body)) if j not in placed and before[j] <= set(placed)]
        placed.append(draw(st.sampled_from(ready)))
    return replace(program, body=tuple(body[j] for j in placed))


@st.composite
def commutative_swaps(draw, program: Program) -> Program:
    """`program` with the arguments of some commutative statements swapped."""
    body = []
    for s in program.body:
        if OPS[s.op].commutative and draw(st.booleans()):
            s = replace(s, args=s.args[::-1])
        body.append(s)
    return replace(program, body=tuple(body))


def run(program: Program, steps: int = 3, seed: int = 0, shapes=((3, 2), (4,))) -> list[torch.Tensor]:
    """The updates of `steps` steps on fixed random float64 inputs (a functional fingerprint)."""
    gen = torch.Generator().manual_seed(seed)
    layout = Layout(shapes)
    compiled = CompiledProgram(program)
    reducer = FlatReducer(layout)
    w = torch.randn(layout.numel, generator=gen, dtype=torch.float64)
    state = compiled.init_state(w)
    updates = []
    for step in range(1, steps + 1):
        g = torch.randn(layout.numel, generator=gen, dtype=torch.float64)
        update, state = compiled.step_flat(w, g, 0.1, step, state, reducer)
        updates.append(update.clone())
        w = w - update
    return updates
