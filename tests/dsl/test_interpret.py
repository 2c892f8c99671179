"""The interpreter: compiled once, runs a list of parameters and a leading batch axis, and
computes plain IEEE numbers (NaN and inf propagate; no hidden epsilons)."""
import textwrap

import pytest
import torch
from hypothesis import given
from .program_strategies import programs

from optsearch.dsl import (OPS, CompiledProgram, FlatReducer, Layout, ProgramOptimizer, compile_program,
                           parse_program)
from optsearch.dsl import interpret
from optsearch.discovered import load_zoo, zoo_names


def program(text: str):
    return parse_program(textwrap.dedent(text))


def randn(*shape, seed=0, dtype=torch.float64, device="cpu"):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(device)


SHAPES = [(3, 4), (5,), (2, 1, 3), ()]

PER_TENSOR = program("""
    def per_tensor(w, g, lr, m):
        m = interp(g, m, 0.9)
        a = norm(m) + rms(g) + mean(g) - abs_mean(m) + max_abs(g) + dot(g, m)
        u = m * a * lr
        return u, m
""")

GLOBAL = program("""
    def global_scale(w, g, lr):
        u = g / global_norm(g) * lr
        return u
""")


def run_separately(prog, params, grads, lr):
    """One ProgramOptimizer per parameter tensor."""
    for p, g in zip(params, grads):
        opt = ProgramOptimizer(prog, [p])
        for gs in g:
            opt.step([gs], lr)


def test_state_is_zero_at_step_1_and_step_counts_from_1():
    p = program("""
        def f(w, g, lr, step, m):
            u = m + g * step
            m = m + g
            return u, m
    """)
    w = torch.zeros(4, dtype=torch.float64)
    g = torch.arange(4.0, dtype=torch.float64)
    opt = ProgramOptimizer(p, [w])
    opt.step([g], 0.1)
    torch.testing.assert_close(w, -g)              # u = 0 + g * 1
    opt.step([g], 0.1)
    torch.testing.assert_close(w, -g - (g + 2 * g))  # u = g + g * 2


def test_program_is_compiled_once_and_steps_never_look_at_the_registry_or_analysis(monkeypatch):
    prog = load_zoo("adamw")
    compiled = compile_program(prog)
    assert len(compiled._steps) == len(prog.body) and all(isinstance(a, int) for st in compiled._steps for a in st.args)
    monkeypatch.setattr(interpret, "OPS", {})
    monkeypatch.setattr(interpret, "check", None)
    params = [randn(3, 4), randn(5, seed=1)]
    opt = ProgramOptimizer(compiled, params)
    for _ in range(3):
        opt.step([torch.ones_like(p) for p in params], 1e-3)
    assert all(torch.isfinite(p).all() for p in params)


def test_dead_statements_are_not_run_and_a_dead_state_is_carried_unchanged():
    p = program("""
        def f(w, g, lr, m):
            m = interp(g, m, 0.9)
            junk = exp(w)
            u = g * lr
            return u, m
    """)
    c = compile_program(p)
    assert len(c._steps) == 1
    w = randn(6)
    update, (m,) = c.step_flat(w, w, 0.5, 1, (torch.full_like(w, 7.0),), FlatReducer(Layout([(6,)])))
    torch.testing.assert_close(update, w * 0.5)
    assert torch.equal(m, torch.full_like(w, 7.0))


@pytest.mark.parametrize("name", ["adamw", "lion", "sgd_momentum"])
def test_batched_run_equals_separate_runs(name, dtype, device):
    prog, copies, steps = load_zoo(name), 4, 5
    params = [randn(copies, *s, seed=k, dtype=dtype, device=device) for k, s in enumerate(SHAPES)]
    grads = [[randn(copies, *s, seed=100 + 10 * t + k, dtype=dtype, device=device) for k, s in enumerate(SHAPES)]
             for t in range(steps)]
    lr = torch.tensor([1e-3, 3e-3, 1e-2, 3e-2], dtype=dtype, device=device).unsqueeze(-1)
    separate = [[p[b].clone() for p in params] for b in range(copies)]
    batched = ProgramOptimizer(prog, params, batch_dims=1)
    for g in grads:
        batched.step(g, lr)
    for b in range(copies):
        opt = ProgramOptimizer(prog, separate[b])
        for g in grads:
            opt.step([x[b] for x in g], float(lr[b]))
        for p, q in zip(params, separate[b]):
            torch.testing.assert_close(p[b], q)


def test_two_batch_axes_behave_like_one():
    prog = load_zoo("adam")
    params = [randn(2, 3, *s, seed=k) for k, s in enumerate(SHAPES)]
    flat = [p.reshape(6, *p.shape[2:]).clone() for p in params]
    lr = torch.linspace(1e-3, 1e-2, 6, dtype=torch.float64).reshape(2, 3, 1)
    two, one = ProgramOptimizer(prog, params, batch_dims=2), ProgramOptimizer(prog, flat, batch_dims=1)
    for t in range(3):
        g = [randn(*p.shape, seed=50 + t + k) for k, p in enumerate(params)]
        two.step(g, lr)
        one.step([x.reshape(6, *x.shape[2:]) for x in g], lr.reshape(6, 1))
    for p, q in zip(params, flat):
        torch.testing.assert_close(p.reshape(q.shape), q)


def test_per_tensor_reductions_see_one_parameter_at_a_time():
    params = [randn(*s, seed=k) for k, s in enumerate(SHAPES)]
    grads = [[randn(*s, seed=10 + 5 * t + k) for k, s in enumerate(SHAPES)] for t in range(4)]
    alone = [p.clone() for p in params]
    opt = ProgramOptimizer(PER_TENSOR, params)
    for g in grads:
        opt.step(g, 0.01)
    run_separately(PER_TENSOR, alone, list(zip(*grads)), 0.01)
    for p, q in zip(params, alone):
        torch.testing.assert_close(p, q)


def test_global_norm_spans_all_parameters():
    params = [randn(*s, seed=k) for k, s in enumerate(SHAPES)]
    grads = [randn(*s, seed=10 + k) for k, s in enumerate(SHAPES)]
    before = [p.clone() for p in params]
    ProgramOptimizer(GLOBAL, params).step(grads, 0.1)
    total = torch.cat([g.flatten() for g in grads]).norm()
    for p, b, g in zip(params, before, grads):
        torch.testing.assert_close(p, b - g / total * 0.1)
    alone = [b.clone() for b in before]
    run_separately(GLOBAL, alone, [[g] for g in grads], 0.1)
    assert not torch.allclose(alone[0], params[0])


def test_global_sum_spans_all_parameters_with_sign():
    prog = program("def f(w, g, lr):\n    s = global_sum(g)\n    u = w * s\n    return u\n")
    grads = [randn(*s, seed=10 + k) for k, s in enumerate(SHAPES)]
    params = [torch.ones_like(g) for g in grads]
    ProgramOptimizer(prog, params).step(grads, 0.1)
    total = torch.cat([g.flatten() for g in grads]).sum()
    for p in params:
        torch.testing.assert_close(p, torch.ones_like(p) - total)


def test_global_norm_is_per_copy_under_a_batch_axis():
    grads = [randn(3, *s, seed=k) for k, s in enumerate(SHAPES)]
    params = [torch.zeros_like(g) for g in grads]
    ProgramOptimizer(GLOBAL, params, batch_dims=1).step(grads, 1.0)
    for b in range(3):
        total = torch.cat([g[b].flatten() for g in grads]).norm()
        for p, g in zip(params, grads):
            torch.testing.assert_close(p[b], -g[b] / total)


def test_zoo_adam_matches_torch_adam_in_float64():
    params = [randn(*s, seed=k).requires_grad_() for k, s in enumerate(SHAPES)]
    ours = [p.detach().clone() for p in params]
    ref = torch.optim.Adam(params, lr=1e-2, foreach=False)
    opt = ProgramOptimizer(load_zoo("adam"), ours)
    for t in range(40):
        grads = [randn(*s, seed=1000 + 10 * t + k) for k, s in enumerate(SHAPES)]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        ref.step()
        opt.step(grads, 1e-2)
    for p, q in zip(params, ours):
        torch.testing.assert_close(q, p.detach(), rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", zoo_names())
def test_zoo_programs_run_in_both_dtypes_and_keep_the_dtype(name, dtype, device):
    params = [randn(4, *s, seed=k, dtype=dtype, device=device) for k, s in enumerate(SHAPES)]
    opt = ProgramOptimizer(load_zoo(name), params, batch_dims=1)
    for t in range(3):
        opt.step([randn(*p.shape, seed=9 + t, dtype=dtype, device=device) for p in params], 1e-3)
    assert all(p.dtype == dtype and p.device.type == device.type and torch.isfinite(p).all() for p in params)
    assert all(s.dtype == dtype for s in opt.state)


@pytest.mark.parametrize("text, expected", [
    ("u = sqrt(g)", float("nan")),             # g = -1
    ("u = g / w", float("-inf")),               # -1 / 0
    ("u = log(w)", float("-inf")),              # log(0)
    ("u = w / w", float("nan")),                # 0 / 0
    ("u = g / norm(w)", float("-inf")),          # no epsilon in the denominator
    ("u = w * rms(w) / rms(w)", float("nan")),
    ("u = power(w, -1.0)", float("inf")),
    ("u = reciprocal(w)", float("inf")),
    ("u = exp(-g * 1000.0)", float("inf")),
], ids=["sqrt(-1)", "-1/0", "log(0)", "0/0", "g/norm(0)", "0*0/0", "0**-1", "1/0", "overflow"])
def test_nan_and_inf_are_plain_ieee(text, expected, dtype):
    p = program(f"def f(w, g, lr):\n    {text}\n    return u\n")
    w, g = torch.zeros(5, dtype=dtype), torch.full((5,), -1.0, dtype=dtype)
    update, _ = compile_program(p).step_flat(w, g, 0.1, 1, (), FlatReducer(Layout([(5,)])))
    torch.testing.assert_close(update, torch.full_like(w, expected), equal_nan=True)


@pytest.mark.parametrize("op", ["norm", "rms", "mean", "abs_mean", "max_abs"])
def test_nan_in_one_parameter_stays_in_that_parameter_for_per_tensor_reductions(op):
    p = program(f"def f(w, g, lr):\n    u = g * {op}(g)\n    return u\n")
    layout = Layout(SHAPES)
    g = randn(layout.numel)
    g[0] = float("nan")
    update, _ = compile_program(p).step_flat(g, g, 0.1, 1, (), FlatReducer(layout))
    first, *rest = layout.unflatten(update)
    assert torch.isnan(first).all() and all(torch.isfinite(r).all() for r in rest)
    glob = program("def f(w, g, lr):\n    u = g * global_norm(g)\n    return u\n")
    update, _ = compile_program(glob).step_flat(g, g, 0.1, 1, (), FlatReducer(layout))
    assert torch.isnan(update).all()


def test_negative_zero_constant_keeps_its_sign():
    p = program("def f(w, g, lr):\n    a = g / -0.0\n    b = g / 0.0\n    u = a - b\n    return u\n")
    g = torch.ones(3)
    update, _ = compile_program(p).step_flat(g, g, 0.1, 1, (), FlatReducer(Layout([(3,)])))
    assert torch.equal(update, torch.full((3,), float("-inf")))


def test_reducer_counts_default_to_the_default_dtype():
    r = FlatReducer(Layout([(2, 3), (4,)]))
    assert r.count().dtype == torch.get_default_dtype()
    assert r.for_dtype(torch.float64).count().tolist() == [6.0] * 6 + [4.0] * 4
    assert FlatReducer(Layout([(2, 3)])).count().tolist() == [6.0]


@pytest.mark.parametrize("name", ["norm", "rms", "mean", "abs_mean", "max_abs", "global_norm"])
def test_reductions_over_a_single_parameter_give_one_number_per_copy(name):
    reducer = FlatReducer(Layout([(6,)])).for_dtype(torch.float64)
    assert OPS[name].impl(reducer, randn(4, 6)).shape == (4, 1)


@given(programs(max_statements=8))
def test_random_programs_batched_equal_unbatched(prog):
    layout, copies = Layout(SHAPES[:2]), 3
    compiled, reducer = CompiledProgram(prog), FlatReducer(layout)
    w, g = randn(copies, layout.numel), randn(copies, layout.numel, seed=1)
    lr = torch.tensor([[0.1], [0.2], [0.3]], dtype=torch.float64)
    state = tuple(randn(copies, layout.numel, seed=2 + k) for k in range(len(prog.state)))
    update, new_state = compiled.step_flat(w, g, lr, 2, state, reducer)
    assert update.shape == w.shape and all(s.shape == w.shape for s in new_state)
    for b in range(copies):
        u, s = compiled.step_flat(w[b], g[b], float(lr[b]), 2, tuple(x[b] for x in state), reducer)
        torch.testing.assert_close(update[b], u, equal_nan=True)
        for x, y in zip(new_state, s):
            torch.testing.assert_close(x[b], y, equal_nan=True)
