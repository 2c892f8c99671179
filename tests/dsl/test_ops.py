"""Completeness of the op registry: every op parses, prints, checks and interprets to the same
numbers as a direct torch reference, in float32 and float64, with and without a batch axis."""
import pytest
import torch

from optsearch.dsl import OPS, CompiledProgram, FlatReducer, Layout, check, get_op, parse_program, print_program

# Direct references on one parameter tensor (a reduction sees exactly one parameter's values),
# written from the spec rather than from ops.py. `global_norm` gets the list of all parameters.
def _matrix(x: torch.Tensor) -> torch.Tensor:
    """A parameter seen as a matrix, as row and col values see it: a vector is one row."""
    return x.reshape(1, -1) if x.dim() < 2 else x.reshape(x.shape[0], -1)


def _newton_schulz(x, a, b, c, steps, eps):
    """Muon's Newton-Schulz orthogonalization of one parameter's matrix view, from its definition:
    X = M / max(|M|_F, eps), transposed when tall; round(steps) times X <- a X + b (X X^T) X + c (X X^T)^2 X."""
    m = _matrix(x)
    tall = m.shape[0] > m.shape[1]
    X = m.T if tall else m
    X = X / torch.maximum(torch.linalg.norm(X), eps)
    for _ in range(int(round(float(steps)))):
        A = X @ X.T
        X = a * X + b * (A @ X) + c * (A @ A @ X)
    return (X.T if tall else X).reshape(x.shape)


REFERENCE = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "div": lambda x, y: x / y,
    "neg": lambda x: -x,
    "abs": torch.abs,
    "sign": torch.sign,
    "sqrt": torch.sqrt,
    "square": lambda x: x * x,
    "exp": torch.exp,
    "log": torch.log,
    "tanh": torch.tanh,
    "arctan": torch.arctan,
    "sin": torch.sin,
    "cos": torch.cos,
    "relu": lambda x: torch.maximum(x, torch.zeros_like(x)),
    "reciprocal": lambda x: 1 / x,
    "maximum": torch.maximum,
    "minimum": torch.minimum,
    "power": lambda x, y: x ** y,
    "interp": lambda x, y, a: (1 - a) * x + a * y,
    "bias_correct": lambda x, beta, step: x / (1 - beta ** step),
    "clip": lambda x, c: torch.clamp(x, -c, c),
    "softsign": lambda x: x / (1 + torch.abs(x)),
    "norm": lambda x: x.square().sum().sqrt(),
    "rms": lambda x: x.square().mean().sqrt(),
    "mean": torch.mean,
    "abs_mean": lambda x: x.abs().mean(),
    "max_abs": lambda x: x.abs().max(),
    "dot": lambda x, y: (x * y).sum(),
    "global_norm": lambda xs: torch.cat([x.flatten() for x in xs]).square().sum().sqrt(),
    "global_sum": lambda xs: torch.cat([x.flatten() for x in xs]).sum(),
    # Row and col values, seen through `u = r + m`: each element gets its row's (column's) mean.
    "row_mean": lambda x: _matrix(x).mean(1, keepdim=True).expand(_matrix(x).shape).reshape(x.shape),
    "col_mean": lambda x: _matrix(x).mean(0, keepdim=True).expand(_matrix(x).shape).reshape(x.shape),
    # Matrix ops, on each parameter's matrix view (a vector is one row).
    "gram_mul": lambda x, y: (_matrix(x) @ _matrix(x).T @ _matrix(y)).reshape(x.shape),
    "orthogonalize": _newton_schulz,
    "rows": lambda x: torch.tensor(float(_matrix(x).shape[0]), dtype=x.dtype),
    "cols": lambda x: torch.tensor(float(_matrix(x).shape[1]), dtype=x.dtype),
}

# Constants for `const` arguments (a matrix op's coefficients): Muon's quintic and the cubic iteration.
CONST_VARIANTS = [("3.4445", "-4.775", "2.0315", "5.0", "1e-07"), ("1.5", "-0.5", "0.0", "3.0", "0.0")]


def tensor_args(name: str) -> tuple[str, ...]:
    """`x y z` in the tensor argument positions of `name`, Muon's constants in its `const` ones."""
    names, consts = iter("xyz"), iter(CONST_VARIANTS[0])
    return tuple(next(consts) if t == "const" else next(names) for t in OPS[name].types())


def test_every_op_has_a_reference_and_nothing_else_does():
    assert set(REFERENCE) == set(OPS), "add a reference for each new op (and remove those of removed ops)"


def call_variants(name: str) -> list[tuple[str, ...]]:
    """Argument lists to call `name` with: tensors `x y z`, scalars `lr step`, constants."""
    op = OPS[name]
    variants = [tensor_args(name)]
    if "const" in op.types():
        variants.append(("y",) + CONST_VARIANTS[1])
    if op.kind == "elementwise":
        variants.append(("x",) + ("0.75", "step")[:op.arity - 1])  # tensor first, then scalars
        variants.append(("lr",) + ("y", "z")[:op.arity - 1])       # scalar first, then tensors
        variants.append(("lr", "0.5", "step")[:op.arity])          # scalars only
    return variants


def program_text(name: str, args: tuple[str, ...]) -> str:
    op = OPS[name]
    if op.symbol and op.arity == 1:
        expr = f"{op.symbol}{args[0]}"
    elif op.symbol:
        expr = f"{args[0]} {op.symbol} {args[1]}"
    else:
        expr = f"{name}({', '.join(args)})"
    # `+ m` (m is zero at step 1) broadcasts a scalar result to a tensor update, exactly.
    return f"def f(w, g, lr, step, x, y, z, m):\n    r = {expr}\n    u = r + m\n    return u, x, y, z, m\n"


CASES = [(name, args) for name in sorted(OPS) for args in call_variants(name)]


@pytest.mark.parametrize("name, args", CASES, ids=[f"{n}({','.join(a)})" for n, a in CASES])
def test_every_op_parses_prints_and_checks(name, args):
    p = parse_program(program_text(name, args))
    assert [s.op for s in p.body] == [name, "add"]
    assert parse_program(print_program(p)) == p
    a = check(p)
    assert a.types[1] == "tensor" and a.dead == ()


def reference_update(name, args, values, lr, step, shapes):
    """The update computed by REFERENCE, one copy and one parameter at a time."""
    op, ref, layout = OPS[name], REFERENCE[name], Layout(shapes)
    flat = {k: v.reshape(-1, layout.numel) for k, v in values.items()}
    out = torch.empty_like(flat["x"])
    lrs = torch.as_tensor(lr, dtype=out.dtype).reshape(-1).expand(len(out))
    for b in range(len(out)):
        params = {k: layout.unflatten(v[b]) for k, v in flat.items()}
        scalars = {"lr": lrs[b], "step": torch.tensor(step, dtype=out.dtype)}

        def operand(a, i):
            if a in params:
                return params[a][i]
            return scalars[a] if a in scalars else torch.tensor(float(a), dtype=out.dtype)

        for i, shape in enumerate(shapes):
            r = ref(params[args[0]]) if op.kind == "global" else ref(*(operand(a, i) for a in args))
            layout.unflatten(out[b])[i].copy_(torch.broadcast_to(r, shape))
    return out.reshape(values["x"].shape)


@pytest.mark.parametrize("shapes", [[(7,)], [(2, 3), (4,), (1,)]], ids=["one param", "three params"])
@pytest.mark.parametrize("batch", [(), (3,)], ids=["unbatched", "batch3"])
def test_every_op_interprets_like_its_torch_reference(shapes, batch, dtype):
    gen = torch.Generator().manual_seed(0)
    layout = Layout(shapes)
    values = {
        "x": torch.randn(*batch, layout.numel, generator=gen, dtype=dtype),
        "y": torch.randn(*batch, layout.numel, generator=gen, dtype=dtype),
        "z": torch.rand(*batch, layout.numel, generator=gen, dtype=dtype),  # in (0, 1): a weight or a beta
    }
    w, g = torch.randn(2, *batch, layout.numel, generator=gen, dtype=dtype)
    lr = torch.rand(*batch, 1, generator=gen, dtype=dtype) if batch else 0.37
    for name, args in CASES:
        compiled = CompiledProgram(parse_program(program_text(name, args)))
        zero = torch.zeros_like(w)
        update, state = compiled.step_flat(w, g, lr, 3, (values["x"], values["y"], values["z"], zero),
                                           FlatReducer(layout))
        expected = reference_update(name, args, values, lr, 3.0, shapes)
        assert update.dtype == dtype and update.shape == w.shape
        torch.testing.assert_close(update, expected, equal_nan=True, msg=lambda m: f"{name}{args}: {m}")


@pytest.mark.parametrize("name", sorted(n for n, op in OPS.items() if op.commutative))
def test_commutative_ops_commute_exactly(name):
    x, y = torch.randn(2, 50, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    op = OPS[name]
    reducer = (FlatReducer(Layout([(50,)])),) if op.kind != "elementwise" else ()
    assert torch.equal(op.impl(*reducer, x, y), op.impl(*reducer, y, x))


@pytest.mark.parametrize("name", sorted(n for n, op in OPS.items() if op.idempotent))
def test_idempotent_ops_are_idempotent(name):
    x = torch.randn(50, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    f = OPS[name].impl
    torch.testing.assert_close(f(f(x)), f(x), rtol=0, atol=0)


def test_unknown_op_suggests_the_closest_name():
    with pytest.raises(KeyError, match="unknown op 'sgn' .*did you mean 'sign'"):
        get_op("sgn")
    assert get_op("interp").arity == 3


# Ops whose torch implementation does not propagate NaN: the reason, shown as an expected failure.
NAN_SWALLOWED = {"sign": "torch.sign(nan) is 0 (torch.optim-style Lion behaves the same)",
                 "rows": "reads only the parameter's shape", "cols": "reads only the parameter's shape"}


@pytest.mark.parametrize("name", sorted(OPS))
def test_nan_in_the_first_argument_propagates(name):
    if name in NAN_SWALLOWED:
        pytest.xfail(NAN_SWALLOWED[name])
    op, layout = OPS[name], Layout([(2,), (3,)])
    gen = torch.Generator().manual_seed(3)
    x, y, z = torch.randn(3, layout.numel, generator=gen, dtype=torch.float64)
    x[0] = float("nan")
    compiled = CompiledProgram(parse_program(program_text(name, tensor_args(name))))
    update, _ = compiled.step_flat(x, x, 0.1, 3, (x, y, z.abs(), torch.zeros_like(x)), FlatReducer(layout))
    # the element (and its row or column: a vector is one row), its tensor, all
    reached = {"elementwise": 1, "factor": 1, "reduction": 2, "global": 5, "matrix": 2}[op.kind]
    assert torch.isnan(update[:reached]).all()
