"""Matrix ops: `gram_mul`, `orthogonalize`, `rows`, `cols` on each parameter's matrix view (shape[0]
x the rest): their types, canonical form, the interpreter's batching per shape (several parameters of
the same and of different shapes, batch axes), and the zoo's Muon against torch.optim.Muon."""
from __future__ import annotations

import math
import textwrap

import pytest
import torch

from optsearch.discovered import load_zoo
from optsearch.dsl import (OPS, CompiledProgram, FlatReducer, Layout, ProgramError, ProgramOptimizer, check,
                           matrix_ops, parse_program, structural_hash, variable_types)
from optsearch.dsl.interpret import matrix_shape
from optsearch.dsl.probe import MATRIX_PROBE_SHAPES, PROBE_SHAPES, probe, probe_for

MUON = (3.4445, -4.775, 2.0315)


def program(text: str, path: str | None = None):
    return parse_program(textwrap.dedent(text), path)


def _matrix(x: torch.Tensor) -> torch.Tensor:
    """A parameter seen as a matrix (shape[0], rest); a vector is one row. Written from the spec."""
    return x.reshape(1, -1) if x.dim() < 2 else x.reshape(x.shape[0], math.prod(x.shape[1:]))


def newton_schulz(x: torch.Tensor, a: float, b: float, c: float, steps: int, eps: float) -> torch.Tensor:
    """torch.optim.Muon's `_zeropower_via_newtonschulz` for one parameter, in x's dtype (torch: bfloat16)."""
    m = _matrix(x)
    X = m.T if m.shape[0] > m.shape[1] else m
    X = X / X.norm().clamp(min=eps)
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return (X.T if m.shape[0] > m.shape[1] else X).reshape(x.shape)


# Types and the canonical form.

def test_matrix_ops_are_registered_as_matrix_ops_with_their_result_types():
    assert {n for n, op in OPS.items() if op.kind == "matrix"} == {"gram_mul", "orthogonalize", "rows", "cols"}
    p = program("""
        def f(w, g, lr, m):
            m = interp(g, m, 0.9)
            o = orthogonalize(m, 3.4445, -4.775, 2.0315, 5.0, 1e-07)
            q = gram_mul(o, g)
            r = rows(w)
            c = cols(w)
            s = r / c
            u = q * s
            u = u + o
            u = u * lr
            return u, m
    """)
    types = variable_types(p)
    assert (types["o"], types["q"], types["r"], types["c"], types["s"]) == ("tensor", "tensor", "scalar", "scalar",
                                                                           "scalar")
    assert matrix_ops(p) == ("orthogonalize", "gram_mul", "rows", "cols")
    assert matrix_ops(load_zoo("adamw")) == ()


@pytest.mark.parametrize("body, line, fragment", [
    ("r = row_mean(g)\n    o = orthogonalize(r, 3.0, -4.0, 2.0, 5.0, 0.0)", 3,
     "orthogonalize() needs a tensor for argument 'x', but 'r' is a row (a matrix op works on each parameter's "
     "matrix view)"),
    ("c = col_mean(g)\n    o = gram_mul(g, c)", 3, "gram_mul() needs a tensor for argument 'y', but 'c' is a col"),
    ("n = norm(g)\n    o = gram_mul(n, g)", 3, "gram_mul() needs a tensor for argument 'x', but 'n' is a scalar"),
    ("o = gram_mul(lr, g)", 2, "gram_mul() needs a tensor for argument 'x', but 'lr' is a scalar"),
    ("o = rows(0.5)", 2, "rows() needs a tensor for argument 'x', but a constant"),
    ("o = orthogonalize(g, lr, -4.0, 2.0, 5.0, 0.0)", 2,
     "orthogonalize() needs a constant (a number) for argument 'a', but 'lr' is a variable"),
    ("n = norm(g)\n    o = orthogonalize(g, 3.0, -4.0, 2.0, n, 0.0)", 3,
     "orthogonalize() needs a constant (a number) for argument 'steps', but 'n' is a variable"),
])
def test_a_matrix_op_on_a_row_col_or_scalar_value_is_a_type_error_naming_file_and_line(body, line, fragment):
    with pytest.raises(ProgramError) as e:
        program(f"def f(w, g, lr):\n    {body}\n    u = g * lr\n    return u\n", path="bad.py")
    assert str(e.value).startswith(f"bad.py:{line}: {fragment}")


def test_canonical_form_never_swaps_matrix_op_arguments():
    def text(x, y):
        return f"""
            def f(w, g, lr, m):
                m = interp(g, m, 0.9)
                q = gram_mul({x}, {y})
                u = q * lr
                return u, m
        """
    assert not OPS["gram_mul"].commutative
    assert structural_hash(program(text("g", "m"))) != structural_hash(program(text("m", "g")))
    same = "o = orthogonalize(g, 3.0, -4.0, 2.0, 5.0, 0.0)"
    other = "o = orthogonalize(g, -4.0, 3.0, 2.0, 5.0, 0.0)"
    hashes = {structural_hash(program(f"def f(w, g, lr):\n    {line}\n    u = o * lr\n    return u\n"))
              for line in (same, other)}
    assert len(hashes) == 2


# The ops themselves, on one parameter.

def test_rows_and_cols_are_the_matrix_view_of_every_shape():
    shapes = [(3, 4), (5,), (), (2, 3, 2), (1, 7)]
    layout = Layout(shapes)
    red = FlatReducer(layout).for_dtype(torch.float64)
    x = torch.zeros(layout.numel, dtype=torch.float64)
    rows, cols = OPS["rows"].impl(red, x), OPS["cols"].impl(red, x)
    for t, shape in zip(layout.unflatten(torch.arange(layout.numel)), shapes):
        k = t.reshape(-1)
        assert rows[k].unique().tolist() == [float(matrix_shape(shape)[0])]
        assert cols[k].unique().tolist() == [float(matrix_shape(shape)[1])]


def orthogonalize_one(x: torch.Tensor, a=1.5, b=-0.5, c=0.0, steps=10.0, eps=0.0) -> torch.Tensor:
    """`orthogonalize` run by the interpreter on the single parameter `x`."""
    p = program(f"""
        def f(w, g, lr):
            o = orthogonalize(g, {a!r}, {b!r}, {c!r}, {steps!r}, {eps!r})
            return o
    """)
    layout = Layout([x.shape])
    update, _ = CompiledProgram(p).step_flat(x.reshape(-1), x.reshape(-1), 1.0, 1, (), FlatReducer(layout))
    return update.reshape(x.shape)


@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 2, 2)], ids=["wide", "tall", "3-d"])
def test_cubic_newton_schulz_converges_to_the_polar_factor(shape):
    """With (a, b, c) = (1.5, -0.5, 0) a singular value of 1 is a fixed point: singular values in
    [0.6, 1] times the norm reach U V^T (the SVD's) in 10 steps, for wide, tall and reshaped views."""
    gen = torch.Generator().manual_seed(0)
    m, n = matrix_shape(shape)
    u, _ = torch.linalg.qr(torch.randn(m, min(m, n), generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, min(m, n), generator=gen, dtype=torch.float64))
    s = torch.linspace(1.0, 0.6, min(m, n), dtype=torch.float64)
    x = (u @ torch.diag(s) @ v.T).reshape(shape) * 7.0
    torch.testing.assert_close(orthogonalize_one(x), (u @ v.T).reshape(shape), rtol=0, atol=1e-12)


def test_orthogonalizing_a_vector_normalises_it():
    """A 1 x n view has one singular value, |x|: the result is x / |x| times the polynomial's iterate at 1
    (exactly 1 for the cubic iteration, about 0.70 after Muon's five quintic steps)."""
    x = torch.tensor([3.0, -4.0, 0.0, 12.0], dtype=torch.float64)
    torch.testing.assert_close(orthogonalize_one(x), x / 13.0, rtol=0, atol=1e-15)
    s = 1.0
    for _ in range(5):
        s = s * (MUON[0] + MUON[1] * s * s + MUON[2] * s ** 4)
    torch.testing.assert_close(orthogonalize_one(x, *MUON, 5.0, 1e-7), x / 13.0 * s, rtol=1e-14, atol=0)
    assert abs(s - 0.6964) < 1e-4


def test_steps_is_rounded_and_clamped_to_1_through_10():
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    runs = {k: newton_schulz(x, *MUON, k, 1e-7) for k in (1, 5, 10)}
    for steps, k in [(0.0, 1), (-3.0, 1), (0.4, 1), (4.6, 5), (5.0, 5), (10.0, 10), (1e9, 10), (1e300, 10)]:
        torch.testing.assert_close(orthogonalize_one(x, *MUON, steps, 1e-7), runs[k], rtol=1e-12, atol=1e-12,
                                   msg=lambda m: f"steps={steps}: {m}")


def test_eps_bounds_the_normalisation_and_without_it_zero_is_nan():
    zero = torch.zeros(3, 4, dtype=torch.float64)
    assert torch.equal(orthogonalize_one(zero, *MUON, 5.0, 1e-7), zero)
    assert torch.isnan(orthogonalize_one(zero, *MUON, 5.0, 0.0)).all()  # 0 / 0: plain IEEE, no hidden epsilon


@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (6,)], ids=["wide", "tall", "vector"])
def test_gram_mul_is_x_xt_y_whichever_order_it_multiplies_in(shape):
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(2, *shape, generator=gen, dtype=torch.float64)
    p = program("""
        def f(w, g, lr):
            q = gram_mul(w, g)
            return q
    """)
    update, _ = CompiledProgram(p).step_flat(x.reshape(-1), y.reshape(-1), 1.0, 1, (), FlatReducer(Layout([shape])))
    want = _matrix(x) @ _matrix(x).T @ _matrix(y)
    torch.testing.assert_close(update.reshape(shape), want.reshape(shape), rtol=1e-12, atol=1e-12)


# The interpreter: one batched chain per shape group, all copies at once.

# Same shapes side by side and apart, a 3-d parameter viewed as (3, 4) beside a (3, 4) one, a vector,
# a 0-d tensor and an empty parameter.
SHAPES = [(4, 3), (2, 5), (4, 3), (4, 3), (3, 2, 2), (3, 4), (6,), (), (0, 3), (5, 2)]

NS_PROGRAM = """
    def f(w, g, lr, m):
        m = interp(g, m, 0.9)
        o = orthogonalize(m, 3.4445, -4.775, 2.0315, 5.0, 1e-07)
        q = gram_mul(o, g)
        c = cols(w)
        q = q / c
        u = o + q
        u = u * lr
        return u, m
"""


def reference_step(w, g, lr, m):
    """NS_PROGRAM for one parameter of one copy, from the ops' definitions."""
    m = 0.1 * g + 0.9 * m
    o = newton_schulz(m, *MUON, 5, 1e-7)
    q = (_matrix(o) @ _matrix(o).T @ _matrix(g)).reshape(g.shape) / _matrix(w).shape[1]
    return (o + q) * lr, m


def test_layout_groups_parameters_by_matrix_view():
    groups = {(g.m, g.n): g for g in Layout(SHAPES).matrix_groups}
    assert {k: g.count for k, g in groups.items()} == {(4, 3): 3, (2, 5): 1, (3, 4): 2, (1, 6): 1, (1, 1): 1,
                                                        (5, 2): 1}
    assert groups[(4, 3)].params == (0, 2, 3) and groups[(4, 3)].starts == (0, 22, 34)
    assert groups[(4, 3)].span is None  # not side by side: stacked
    assert groups[(3, 4)].span == slice(46, 70)  # (3, 2, 2) and (3, 4) side by side: one slice


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)], ids=["unbatched", "batch3", "batch2x3"])
def test_matrix_ops_run_per_parameter_for_every_copy(batch):
    layout = Layout(SHAPES)
    gen = torch.Generator().manual_seed(3)
    w, g, m = torch.randn(3, *batch, layout.numel, generator=gen, dtype=torch.float64)
    lr = torch.rand(*batch, 1, generator=gen, dtype=torch.float64) if batch else 0.3
    update, (new_m,) = CompiledProgram(program(NS_PROGRAM)).step_flat(w, g, lr, 1, (m,), FlatReducer(layout))
    assert update.shape == w.shape and new_m.shape == w.shape
    lrs = torch.as_tensor(lr, dtype=torch.float64).reshape(-1).expand(max(1, torch.Size(batch).numel()))
    flat = [x.reshape(-1, layout.numel) for x in (w, g, m, update, new_m)]
    for b in range(len(lrs)):
        tensors = [layout.unflatten(x[b]) for x in flat]
        for k in range(len(SHAPES)):
            wk, gk, mk, uk, nk = (t[k] for t in tensors)
            want_u, want_m = reference_step(wk, gk, lrs[b], mk)
            torch.testing.assert_close(uk, want_u, rtol=1e-10, atol=1e-12, msg=lambda s: f"copy {b}, {SHAPES[k]}: {s}")
            torch.testing.assert_close(nk, want_m, rtol=1e-15, atol=1e-15)


def test_program_optimizer_with_a_batch_axis_equals_one_optimizer_per_copy():
    prog = load_zoo("muon")
    gen = torch.Generator().manual_seed(4)
    shapes = [(4, 3), (3,), (4, 3), (2, 6)]
    lrs = torch.tensor([[0.01], [0.02], [0.05]], dtype=torch.float64)
    batched = [torch.randn(3, *s, generator=gen, dtype=torch.float64) for s in shapes]
    single = [[p[b].clone() for p in batched] for b in range(3)]
    opt = ProgramOptimizer(prog, batched, batch_dims=1)
    opts = [ProgramOptimizer(prog, ps) for ps in single]
    for _ in range(5):
        grads = [torch.randn(3, *s, generator=gen, dtype=torch.float64) for s in shapes]
        opt.step(grads, lrs)
        for b in range(3):
            opts[b].step([gr[b] for gr in grads], float(lrs[b]))
    for b in range(3):
        for p, q in zip(batched, single[b]):
            torch.testing.assert_close(p[b], q, rtol=1e-12, atol=1e-14)


def test_matrix_ops_on_the_device_match_cpu(device):
    layout = Layout(SHAPES)
    w, g, m = torch.randn(3, 2, layout.numel, generator=torch.Generator().manual_seed(5))
    compiled = CompiledProgram(program(NS_PROGRAM))
    want, _ = compiled.step_flat(w, g, 0.1, 1, (m,), FlatReducer(layout))
    dev_layout = Layout(SHAPES, device)
    got, _ = compiled.step_flat(w.to(device), g.to(device), 0.1, 1, (m.to(device),), FlatReducer(dev_layout))
    torch.testing.assert_close(got.cpu(), want, rtol=1e-4, atol=1e-5)  # float32 matmuls sum in another order there


# Muon: the zoo programs against torch.optim.Muon.

class Float64Muon(torch.optim.Optimizer):
    """torch.optim.Muon's step (`_single_tensor_muon`) with Newton-Schulz in float64 instead of
    bfloat16: the exact reference."""

    def __init__(self, params, lr, adjust_lr_fn=None, weight_decay=0.1, momentum=0.95, ns_coefficients=MUON,
                 eps=1e-7, ns_steps=5):
        super().__init__(params, dict(lr=lr, adjust_lr_fn=adjust_lr_fn, weight_decay=weight_decay,
                                      momentum=momentum, ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, mu = group["lr"], group["momentum"]
            for p in group["params"]:
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                buf.lerp_(p.grad, 1 - mu)
                update = newton_schulz(p.grad.lerp(buf, mu), *group["ns_coefficients"], group["ns_steps"],
                                       group["eps"])
                A, B = p.shape
                ratio = max(1, A / B) ** 0.5 if group["adjust_lr_fn"] is None else 0.2 * max(A, B) ** 0.5
                p.mul_(1 - lr * group["weight_decay"])
                p.add_(update, alpha=-lr * ratio)


def muon_errors(name: str, make_reference, steps: int = 40, lr: float = 0.02) -> float:
    """Max over parameters of max |ours - reference| / max |reference| after `steps` steps."""
    gen = torch.Generator().manual_seed(6)
    shapes = [(8, 4), (4, 8), (6, 6), (8, 4), (16, 3)]
    ws = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    ours, theirs = [w.clone() for w in ws], [torch.nn.Parameter(w.clone()) for w in ws]
    opt, ref = ProgramOptimizer(load_zoo(name), ours), make_reference(theirs, lr)
    for _ in range(steps):
        grads = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
        opt.step(grads, lr)
        for p, gr in zip(theirs, grads):
            p.grad = gr.clone()
        ref.step()
    moved = max(((a - w).abs().max() / w.abs().max()).item() for a, w in zip(ours, ws))
    assert moved > 0.1, "the parameters must move for the comparison to mean something"
    return max(((a - b.detach()).abs().max() / b.detach().abs().max()).item() for a, b in zip(ours, theirs))


ADJUST = {"muon": None, "muon_rms": "match_rms_adamw"}


@pytest.mark.parametrize("name", sorted(ADJUST))
def test_muon_matches_a_float64_newton_schulz_reference_exactly(name):
    err = muon_errors(name, lambda ps, lr: Float64Muon(ps, lr, adjust_lr_fn=ADJUST[name]))
    assert err < 1e-12  # measured: 1.3e-15 (muon), 8.6e-16 (muon_rms)


@pytest.mark.parametrize("name", sorted(ADJUST))
def test_muon_matches_torch_optim_muon_within_its_bfloat16_newton_schulz(name):
    err = muon_errors(name, lambda ps, lr: torch.optim.Muon(ps, lr, adjust_lr_fn=ADJUST[name]))
    assert err < 5e-3  # measured: 2.1e-3 (muon), 7.3e-4 (muon_rms); torch runs Newton-Schulz in bfloat16


# The probe (fingerprints and the rewrites' check): a tall matrix for programs with matrix ops only.

SCALED = """
    def f(w, g, lr):
        o = orthogonalize(g, 3.4445, -4.775, 2.0315, 5.0, 1e-07)
        r = rows(w)
        c = cols(w)
        ratio = r / c
        ratio = maximum(ratio, 1.0)
        scale = sqrt(ratio)
        u = o * scale
        u = u * lr
        return u
"""


def test_matrix_programs_are_probed_with_a_tall_matrix_so_shape_scalings_show():
    """Muon's max(1, rows / cols) ** 0.5 is 1 on the plain probe's vector and wide matrix: only the
    tall one tells the scaled program from the unscaled one."""
    scaled = program(SCALED)
    unscaled = program(SCALED.replace("u = o * scale", "u = o * 1.0"))
    assert probe_for(scaled) is probe_for(unscaled) is probe(MATRIX_PROBE_SHAPES)
    assert torch.equal(probe().updates(scaled), probe().updates(unscaled))
    assert not torch.equal(probe_for(scaled).updates(scaled), probe_for(unscaled).updates(unscaled))
    assert any(s[0] > s[1] for s in MATRIX_PROBE_SHAPES if len(s) == 2)


def test_programs_without_matrix_ops_keep_the_plain_probe():
    for name in ("adamw", "lion", "adafactor"):
        assert probe_for(load_zoo(name)) is probe() and probe().layout.shapes == list(PROBE_SHAPES)
    dead = program("def f(w, g, lr):\n    r = rows(w)\n    u = g * lr\n    return u\n")  # a dead matrix op
    assert probe_for(dead) is probe()
