"""Factored state: `row` and `col` types, their ops, state shaped like a row or a column, the
Adafactor and factored-Lion zoo programs against direct per-tensor references, their exports, and
the state memory a program keeps (`state_numel`)."""
from __future__ import annotations

import io
import types

import pytest
import torch

from optsearch.discovered import load_zoo
from optsearch.dsl import (CompiledProgram, FlatReducer, Layout, ProgramError, ProgramOptimizer, check,
                           parse_program, variable_types)
from optsearch.dsl.export import export_program
from optsearch.dsl.interpret import matrix_shape

SHAPES = [(3, 4), (5,), (), (2, 3, 2)]


def _matrix(x: torch.Tensor) -> torch.Tensor:
    """A parameter seen as a matrix (shape[0], rest); a vector is one row. Written from the spec."""
    return x.reshape(1, -1) if x.dim() < 2 else x.reshape(x.shape[0], -1)


class AdafactorReference(torch.optim.Optimizer):
    """Adafactor as Shazeer & Stern (2018) write it, one tensor at a time, with an external lr: for
    G seen as an m x n matrix, R <- b R + (1 - b) rowmean(G^2 + eps1), C likewise over columns,
    V = R C^T / mean(R), U = G / sqrt(V), U /= max(1, RMS(U)), w <- w - lr U, b = 1 - t^-0.8."""

    def __init__(self, params, lr, eps1=1e-30, decay_rate=-0.8, clip=1.0):
        super().__init__(params, dict(lr=lr, eps1=eps1, decay_rate=decay_rate, clip=clip))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                G = _matrix(p.grad)
                st = self.state[p]
                if not st:
                    st.update(t=0, R=G.new_zeros(G.shape[0]), C=G.new_zeros(G.shape[1]))
                st["t"] += 1
                b = 1 - st["t"] ** group["decay_rate"]
                G2 = G * G + group["eps1"]
                st["R"].mul_(b).add_(G2.mean(1), alpha=1 - b)
                st["C"].mul_(b).add_(G2.mean(0), alpha=1 - b)
                V = torch.outer(st["R"], st["C"]) / st["R"].mean()
                U = G / V.sqrt()
                U = U / torch.clamp(U.square().mean().sqrt() / group["clip"], min=1.0)
                p.sub_(group["lr"] * U.reshape(p.shape))


class LionFactoredReference(torch.optim.Optimizer):
    """Lion whose momentum is kept as row means r and column means c (H-Fac's factored momentum) and
    used as M = r 1^T + 1 c^T - mean(r): w <- w - lr (sign(b1 M + (1 - b1) G) + wd w), then
    r <- b2 r + (1 - b2) rowmean(G), c likewise."""

    def __init__(self, params, lr, betas=(0.9, 0.99), weight_decay=0.01):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                G = _matrix(p.grad)
                st = self.state[p]
                if not st:
                    st.update(r=G.new_zeros(G.shape[0], 1), c=G.new_zeros(1, G.shape[1]))
                M = st["r"] + st["c"] - st["r"].mean()
                update = torch.sign(b1 * M + (1 - b1) * G).reshape(p.shape) + group["weight_decay"] * p
                p.sub_(group["lr"] * update)
                st["r"].mul_(b2).add_(G.mean(1, keepdim=True), alpha=1 - b2)
                st["c"].mul_(b2).add_(G.mean(0, keepdim=True), alpha=1 - b2)


def exported(program) -> type[torch.optim.Optimizer]:
    """The exported optimizer class, imported as a user would (a fresh module, no optsearch)."""
    module = types.ModuleType(f"exported_{program.name}")
    exec(compile(export_program(program), f"<exported {program.name}>", "exec"), module.__dict__)
    return next(v for k, v in vars(module).items() if isinstance(v, type) and issubclass(v, torch.optim.Optimizer)
                and v is not torch.optim.Optimizer)


def gradients(shapes, steps: int, seed: int = 0, dtype=torch.float64, batch=()):
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn((*batch, *s), generator=gen, dtype=dtype) for s in shapes] for _ in range(steps)]


# -- types ------------------------------------------------------------------------------------

def types_of(text: str) -> dict[str, str]:
    return variable_types(parse_program(text))


def test_row_and_col_values_follow_broadcasting():
    t = types_of("def f(w, g, lr):\n    r = row_mean(g)\n    c = col_mean(g)\n    rr = r * r\n    rs = r + lr\n"
                 "    o = r * c\n    rg = r - g\n    n = norm(r)\n    cc = c / 2.0\n    return o\n")
    assert (t["r"], t["c"], t["rr"], t["rs"], t["o"], t["rg"], t["n"], t["cc"]) == \
        ("row", "col", "row", "row", "tensor", "tensor", "scalar", "col")


def test_a_state_has_the_type_of_what_it_returns_as():
    a = check(load_zoo("adafactor"))
    assert a.state_types == ("row", "col")
    text = "def f(w, g, lr, m, v):\n    m = interp(g, m, 0.9)\n    r = row_mean(g)\n    v = interp(v, r, 0.9)\n" \
           "    u = m / v\n    return u, m, v\n"
    assert check(parse_program(text)).state_types == ("tensor", "row")


def test_a_state_only_fed_by_itself_and_scalars_stays_a_tensor():
    text = "def f(w, g, lr, m):\n    m = m * 0.9\n    u = g + m\n    return u, m\n"
    assert check(parse_program(text)).state_types == ("tensor",)


def test_a_state_mixed_with_a_tensor_is_a_tensor():
    """The type is what the state returns as (a least fixed point): a row mean mixed with `g` is
    stored whole, and state memory shows it."""
    text = "def f(w, g, lr, v):\n    r = row_mean(g)\n    v = interp(v, r, 0.9)\n    v = v * g\n    return v, v\n"
    compiled = CompiledProgram(parse_program(text))
    assert compiled.analysis.state_types == ("tensor",)
    assert compiled.state_numel([(3, 4)]) == 12


def test_states_that_feed_each_other_are_typed_together():
    text = "def f(w, g, lr, a, b):\n    r = row_mean(g)\n    a = r + b\n    c = col_mean(g)\n    b = c + a\n" \
           "    u = a * g\n    return u, a, b\n"
    assert check(parse_program(text)).state_types == ("tensor", "tensor")
    swap = "def f(w, g, lr, a, b):\n    r = row_mean(g)\n    u = a * g\n    return u, b, r\n"
    assert check(parse_program(swap)).state_types == ("row", "row")


@pytest.mark.parametrize("text, line, fragment", [
    ("def f(w, g, lr):\n    r = row_mean(g)\n    x = row_mean(r)\n    return g\n", 3,
     "row_mean() needs a tensor for argument 'x', but 'r' is a row"),
    ("def f(w, g, lr):\n    c = col_mean(g)\n    x = col_mean(c)\n    return g\n", 3, "but 'c' is a col"),
    ("def f(w, g, lr):\n    x = col_mean(lr)\n    return g\n", 2, "col_mean() needs a tensor for argument 'x', but 'lr' is a scalar"),
    ("def f(w, g, lr):\n    x = row_mean(2.0)\n    return g\n", 2, "but a constant"),
    ("def f(w, g, lr, v):\n    r = row_mean(v)\n    x = row_mean(r)\n    return g, v\n", 3, "'r' is a row"),
    ("def f(w, g, lr):\n    r = row_mean(g)\n    u = r * lr\n    return u\n", 4,
     "the update must be a tensor shaped like w, but 'u' is a row"),
    ("def f(w, g, lr, m):\n    r = row_mean(g)\n    m = mean(r)\n    return g, m\n", 4,
     "the new value of state 'm' must be a tensor, a row or a col, but 'm' is a scalar"),
    ("def f(w, g, lr, m):\n    r = norm(m)\n    x = row_mean(r)\n    return g, m\n", 3, "'r' is a scalar"),
], ids=["row_mean of a row", "col_mean of a col", "of lr", "of a constant", "of a row of a state", "row update",
        "scalar state", "of a reduction"])
def test_checker_refuses_type_mismatches_naming_the_line(text, line, fragment):
    with pytest.raises(ProgramError) as info:
        check(parse_program(text, validate=False), path="prog.py")
    assert info.value.line == line and fragment in str(info.value)
    assert str(info.value).startswith(f"prog.py:{line}: ")


def test_canonical_form_keeps_the_state_types():
    from optsearch.dsl import canonicalize
    for name in ("adafactor", "lion_factored"):
        assert check(canonicalize(load_zoo(name))).state_types == check(load_zoo(name)).state_types


# -- interpreter ------------------------------------------------------------------------------

def test_matrix_view_of_every_shape():
    assert [matrix_shape(s) for s in [(3, 4), (5,), (), (2, 3, 2), (0,)]] == [(3, 4), (1, 5), (1, 1), (2, 6), (1, 0)]
    layout = Layout(SHAPES)
    assert layout.rows.numel == 3 + 1 + 1 + 2 and layout.cols.numel == 4 + 5 + 1 + 6


@pytest.mark.parametrize("batch", [(), (2,)], ids=["unbatched", "batch2"])
def test_row_and_col_means_over_the_flat_buffer(batch):
    layout = Layout(SHAPES)
    xs = gradients(SHAPES, 1, batch=batch)[0]
    red = FlatReducer(layout)
    flat = layout.flatten(xs, len(batch))
    rows, cols = red.row_mean(flat), red.col_mean(flat)
    assert rows.shape == (*batch, layout.rows.numel) and cols.shape == (*batch, layout.cols.numel)
    nb = len(batch)
    want_r = torch.cat([_matrix_b(x, nb).mean(-1) for x in xs], -1)
    want_c = torch.cat([_matrix_b(x, nb).mean(-2) for x in xs], -1)
    torch.testing.assert_close(rows, want_r)
    torch.testing.assert_close(cols, want_c)


def _matrix_b(x: torch.Tensor, nb: int) -> torch.Tensor:
    batch, shape = x.shape[:nb], x.shape[nb:]
    m = 1 if len(shape) < 2 else shape[0]
    return x.reshape(*batch, m, -1)


MIXED = """
def f(w, g, lr):
    r = row_mean(g)
    c = col_mean(w)
    o = r * c
    n = norm(g)
    rn = r * n
    k = rms(c)
    ck = c / k
    u = o + rn
    u = u - ck
    s = dot(r, g)
    u = u * s
    return u
"""


def mixed_reference(w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    W, G = _matrix(w), _matrix(g)
    R, C = G.mean(1, keepdim=True), W.mean(0, keepdim=True)
    ck = C / C.square().mean().sqrt()
    u = R * C + R * G.norm() - ck
    return (u * (R * G).sum()).reshape(w.shape)


@pytest.mark.parametrize("shapes", [SHAPES, [(3, 4)], [(5,)]], ids=["four params", "one matrix", "one vector"])
@pytest.mark.parametrize("batch", [(), (2,)], ids=["unbatched", "batch2"])
def test_rows_cols_and_per_tensor_scalars_meet_on_the_right_axis(shapes, batch):
    """Outer products, a tensor's scalar on a row, a col's scalar on a tensor, a reduction over a
    row and a tensor: one kernel per statement, equal to the per-tensor math."""
    layout = Layout(shapes)
    ws, gs = gradients(shapes, 2, seed=1, batch=batch)
    compiled = CompiledProgram(parse_program(MIXED))
    nb = len(batch)
    update, _ = compiled.step_flat(layout.flatten(ws, nb), layout.flatten(gs, nb), 0.1, 1, (), FlatReducer(layout))
    for u, w, g in zip(layout.unflatten(update), ws, gs):
        if nb:
            want = torch.stack([mixed_reference(w[b], g[b]) for b in range(batch[0])])
        else:
            want = mixed_reference(w, g)
        torch.testing.assert_close(u, want)


def test_row_and_col_state_is_shaped_by_the_layout():
    compiled = CompiledProgram(load_zoo("adafactor"))
    layout = Layout(SHAPES)
    w = torch.zeros(3, layout.numel)
    vr, vc = compiled.init_state(w, layout)
    assert vr.shape == (3, layout.rows.numel) and vc.shape == (3, layout.cols.numel)
    with pytest.raises(ValueError, match="state 'vr' of 'adafactor' is a row: init_state needs the layout"):
        compiled.init_state(w)


def run_interpreter(program, grads, lr, shapes, dtype=torch.float64):
    gen = torch.Generator().manual_seed(5)
    params = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
    opt = ProgramOptimizer(program, params)
    for gs in grads:
        opt.step(gs, lr)
    return params, opt


def run_reference(make, grads, lr, shapes, dtype=torch.float64):
    gen = torch.Generator().manual_seed(5)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in shapes]
    opt = make(params, lr)
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt.step()
    return [p.detach() for p in params], opt


def test_adafactor_program_matches_a_direct_per_tensor_reference():
    grads = gradients(SHAPES, 12)
    ours, opt = run_interpreter(load_zoo("adafactor"), grads, 0.01, SHAPES)
    theirs, ref = run_reference(AdafactorReference, grads, 0.01, SHAPES)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # The factored second moment itself: vr and vc are the reference's R and C, side by side.
    rows, cols = opt.layout.rows, opt.layout.cols
    for k, p in enumerate(ref.param_groups[0]["params"]):
        torch.testing.assert_close(rows.unflatten(opt.state[0])[k], ref.state[p]["R"], rtol=1e-12, atol=0)
        torch.testing.assert_close(cols.unflatten(opt.state[1])[k], ref.state[p]["C"], rtol=1e-12, atol=0)


def test_factored_lion_momentum_is_lions_projected_onto_rows_plus_columns():
    """mr, mc are the row and column means of Lion's full momentum M, and mr + mc - mean(mr) is
    M's Frobenius projection onto matrices a_i + b_j: the residual has zero row and column sums."""
    shape, beta = (4, 6), 0.99
    grads = gradients([shape], 25, seed=2)
    _, opt = run_interpreter(load_zoo("lion_factored"), grads, 1e-3, [shape])
    M = torch.zeros(shape, dtype=torch.float64)
    for (g,) in grads:
        M = beta * M + (1 - beta) * g
    mr, mc = opt.state
    torch.testing.assert_close(mr, M.mean(1))
    torch.testing.assert_close(mc, M.mean(0))
    residual = M - (mr[:, None] + mc[None, :] - mr.mean())
    torch.testing.assert_close(residual.sum(0), torch.zeros(6, dtype=torch.float64), atol=1e-14, rtol=0)
    torch.testing.assert_close(residual.sum(1), torch.zeros(4, dtype=torch.float64), atol=1e-14, rtol=0)


def test_factored_lion_matches_its_reference_and_is_lion_on_vectors():
    grads = gradients(SHAPES, 15, seed=3)
    ours, _ = run_interpreter(load_zoo("lion_factored"), grads, 1e-2, SHAPES)
    theirs, _ = run_reference(LionFactoredReference, grads, 1e-2, SHAPES)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    vector = [(7,)]
    grads = gradients(vector, 15, seed=4)
    lion, _ = run_interpreter(load_zoo("lion"), grads, 1e-2, vector)
    factored, _ = run_interpreter(load_zoo("lion_factored"), grads, 1e-2, vector)
    torch.testing.assert_close(lion[0], factored[0], rtol=1e-12, atol=1e-12)


# -- export -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("path", ["fused", "foreach", "per_tensor"])
@pytest.mark.parametrize("name", ["adafactor", "lion_factored"])
def test_export_matches_the_interpreter(name, path, dtype):
    program, lr = load_zoo(name), 1e-2
    grads = gradients(SHAPES, 10, seed=6, dtype=dtype)
    theirs, _ = run_interpreter(program, grads, lr, SHAPES, dtype)
    gen = torch.Generator().manual_seed(5)
    ours = [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in SHAPES]
    cls = exported(program)
    paths = {"fused": {"fused": True}, "foreach": {"foreach": True}, "per_tensor": {"foreach": False}}
    opt = cls(ours, lr=lr, **paths[path])
    for gs in grads:
        for p, g in zip(ours, gs):
            p.grad = g.clone()
        opt.step()
    tol = dict(rtol=1e-9, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    for p, w in zip(ours, theirs):
        torch.testing.assert_close(p.detach(), w, **tol)
    if path == "fused":  # compiled, factored row and col state included
        assert cls.compiled_step.error is None and cls.compiled_step.compiles > 0


@pytest.mark.parametrize("name, make", [("adafactor", AdafactorReference), ("lion_factored", LionFactoredReference)])
def test_export_matches_the_reference_optimizer(name, make):
    grads = gradients(SHAPES, 20, seed=7)
    theirs, _ = run_reference(make, grads, 1e-2, SHAPES)
    ours, _ = run_reference(lambda p, lr: exported(load_zoo(name))(p, lr=lr), grads, 1e-2, SHAPES)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_exported_state_is_shaped_like_rows_and_columns_and_round_trips():
    cls = exported(load_zoo("adafactor"))
    grads = gradients(SHAPES, 8, seed=8)
    gen = torch.Generator().manual_seed(5)
    a = [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=torch.float64)) for s in SHAPES]
    opt = cls(a, lr=1e-2)

    def step(opt, params, gs):
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt.step()

    for gs in grads[:4]:
        step(opt, a, gs)
    shapes = {p.shape: (tuple(opt.state[p]["vr"].shape), tuple(opt.state[p]["vc"].shape)) for p in a}
    assert shapes == {(3, 4): ((3, 1), (1, 4)), (5,): ((1,), (5,)), (): ((), ()), (2, 3, 2): ((2, 1, 1), (1, 3, 2))}
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    resumed = cls(b, lr=1e-2)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for gs in grads[4:]:
        step(opt, a, gs)
        step(resumed, b, gs)
    for p, q in zip(a, b):
        assert torch.equal(p, q)


# -- memory -----------------------------------------------------------------------------------

def test_state_numel_counts_what_each_state_keeps():
    shapes = [(3, 4), (5,)]  # 17 parameters; as matrices 3 x 4 and 1 x 5
    numel = {name: CompiledProgram(load_zoo(name)).state_numel(shapes)
             for name in ("sgd", "lion", "adamw", "adafactor", "lion_factored")}
    assert numel == {"sgd": 0, "lion": 17, "adamw": 34, "adafactor": (3 + 4) + (1 + 5), "lion_factored": 13}
    big = [(256, 1024)]
    assert CompiledProgram(load_zoo("adafactor")).state_numel(big) / (256 * 1024) == pytest.approx(
        (256 + 1024) / (256 * 1024))


def test_state_numel_leaves_out_state_that_never_reaches_the_update():
    text = "def f(w, g, lr, m, v):\n    m = interp(g, m, 0.9)\n    v = v + g\n    u = sign(m)\n    return u, m, v\n"
    assert CompiledProgram(parse_program(text)).state_numel([(3, 4)]) == 12
