"""The low-rank subspace transform (GaLore / Online Subspace Descent) around any program."""
from __future__ import annotations

import importlib.util
import io

import pytest
import torch

from optsearch.discovered import zoo_path
from optsearch.dsl import FlatReducer, Layout, OptsearchError, ProgramOptimizer, compile_program, load_program
from optsearch.dsl.export import export_subspace
from optsearch.dsl.parse import parse_program
from optsearch.dsl.subspace import Subspace, SubspaceProgram, _pca_grad, subspace_from_options, w_separable


def zoo(name: str):
    return load_program(zoo_path(name))


def run(step_object, tensors: list[torch.Tensor], grads: list[list[torch.Tensor]], lr, batch_dims: int = 0):
    """Apply `step_object` over a sequence of gradients; returns the updates and the final state."""
    layout = Layout.of(tensors, batch_dims)
    reducer = FlatReducer(layout)
    w = layout.flatten(tensors, batch_dims)
    state = step_object.init_state(w, layout)
    updates = []
    for t, gs in enumerate(grads, start=1):
        u, state = step_object.step_flat(w, layout.flatten(gs, batch_dims), lr, t, state, reducer)
        updates.append(u)
        w = w - u
    return updates, state


def random_grads(tensors, steps: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in tensors] for _ in range(steps)]


def import_source(source: str, tmp_path, name: str):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["adamw", "lion", "rmsprop", "sgd_momentum", "adagrad"])
def test_rank_equal_to_the_full_side_with_identity_projection_reproduces_the_plain_program_exactly(name):
    torch.manual_seed(0)
    # Two copies (a batch axis); every matrix's smaller side is 4 = the rank, one with rows smaller.
    tensors = [torch.randn(2, 7, 4), torch.randn(2, 4, 9), torch.randn(2, 4), torch.randn(2, 4, 4)]
    lr = torch.tensor([[1e-2], [3e-3]])
    grads = random_grads(tensors, 12)
    compiled = compile_program(zoo(name))
    # `online` from the identity: at P = I the online-PCA loss is 0 with a zero gradient, so P stays I.
    sub = Subspace(4, projection="online", init="identity", include_full_rank=True)
    plain, _ = run(compiled, tensors, grads, lr, batch_dims=1)
    projected, state = run(SubspaceProgram(compiled, sub), tensors, grads, lr, batch_dims=1)
    for a, b in zip(plain, projected):
        assert torch.equal(a, b)
    P = state[len(compiled.state_names)]
    assert torch.equal(P, torch.cat([torch.eye(4).flatten()] * 3).expand(2, -1))


def test_the_online_update_keeps_P_near_orthonormal_on_real_gradients():
    """P starts orthonormal (SVD of the first gradient) and takes Adam steps on the online-PCA loss
    with gradients of a real model in training: its rows stay close to orthonormal."""
    torch.manual_seed(0)
    x = torch.randn(512, 48)
    y = torch.tanh(x @ torch.randn(48, 32)) @ torch.randn(32, 10)
    model = torch.nn.Sequential(torch.nn.Linear(48, 64), torch.nn.Tanh(), torch.nn.Linear(64, 10))
    params = list(model.parameters())
    sub = Subspace(8, projection="online", lr_p=0.005)
    opt = ProgramOptimizer(SubspaceProgram(compile_program(zoo("adamw")), sub), [p.detach() for p in params])
    k = len(opt.compiled.state_names)
    worst, first_loss = 0.0, None
    for step in range(300):
        idx = torch.randint(0, 512, (64,))
        loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
        first_loss = first_loss if first_loss is not None else float(loss.detach())
        grads = torch.autograd.grad(loss, params)
        opt.step([g.detach() for g in grads], 3e-3)
        plan = opt.compiled._plan(opt.layout)
        for P in plan.proj.unflatten(opt.state[k]):
            gram = P @ P.mT
            worst = max(worst, float(torch.linalg.matrix_norm(gram - torch.eye(gram.shape[0]))))
    assert float(loss.detach()) < 0.5 * first_loss  # it trains
    assert worst < 0.2  # ||P P^T - I||_F, worst over every step and matrix (measured: 0.11)


def test_the_pca_gradient_is_the_gradient_of_the_online_pca_loss():
    torch.manual_seed(1)
    c = torch.randn(3, 10, 6, dtype=torch.float64)
    P = torch.randn(3, 2, 6, dtype=torch.float64, requires_grad=True)
    G = c / torch.linalg.matrix_norm(c, keepdim=True)
    loss = (G @ P.mT @ P - G).square().sum()
    (expected,) = torch.autograd.grad(loss, P)
    torch.testing.assert_close(_pca_grad(c, P.detach()), expected)
    assert torch.equal(_pca_grad(torch.zeros(10, 6), torch.randn(2, 6)), torch.zeros(2, 6))  # no NaN at g = 0


def test_svd_projection_is_recomputed_every_K_steps_and_only_then():
    tensors = [torch.randn(12, 6)]
    grads = random_grads(tensors, 7)
    sp = SubspaceProgram(compile_program(zoo("adamw")), Subspace(2, projection="svd", update_every=3))
    layout, Ps = Layout.of(tensors), []
    reducer, w = FlatReducer(layout), layout.flatten(tensors)
    state = sp.init_state(w, layout)
    for t, gs in enumerate(grads, start=1):
        u, state = sp.step_flat(w, layout.flatten(gs), 1e-2, t, state, reducer)
        Ps.append(state[2].view(2, 6))
        if t in (1, 4, 7):  # the top-2 right singular vectors of this step's gradient
            Vh = torch.linalg.svd(gs[0], full_matrices=False).Vh[:2]
            torch.testing.assert_close(Ps[-1], Vh)
        else:
            assert torch.equal(Ps[-1], Ps[-2])


def test_parameters_that_are_not_matrices_or_have_a_small_side_run_the_plain_program():
    torch.manual_seed(2)
    tensors = [torch.randn(5), torch.randn(3, 4, 5), torch.randn(3, 30), torch.randn(20, 8)]
    grads = random_grads(tensors, 6)
    compiled = compile_program(zoo("adamw"))
    sp = SubspaceProgram(compiled, Subspace(3))
    plain, _ = run(compiled, tensors, grads, 1e-2)
    projected, state = run(sp, tensors, grads, 1e-2)
    layout = Layout.of(tensors)
    for a, b in zip(plain, projected):
        ua, ub = layout.unflatten(a), layout.unflatten(b)
        for i in range(3):  # vector, 3-D tensor, a matrix whose smaller side (3) is not above the rank
            assert torch.equal(ua[i], ub[i])
        assert not torch.allclose(ua[3], ub[3])  # the 20 x 8 matrix runs in the subspace
    # State: m and v over (5 + 60 + 90 + 20 * 3) elements, P (3 x 8) and Adam's two moments for it.
    low = 5 + 60 + 90 + 20 * 3
    assert [s.numel() for s in state] == [low, low, 24, 24, 24]
    assert sp.state_numel(layout.shapes) == 2 * low + 3 * 24
    assert SubspaceProgram(compiled, Subspace(3, projection="svd")).state_numel(layout.shapes) == 2 * low + 24


def test_decoupled_weight_decay_acts_on_the_full_parameter():
    """With a zero gradient the subspace step of AdamW and Lion is exactly their weight decay on
    all of `w`, not only on its projection."""
    torch.manual_seed(3)
    tensors = [torch.randn(16, 8, dtype=torch.float64)]
    zero = [[torch.zeros(16, 8, dtype=torch.float64)]]
    for name in ("adamw", "lion"):
        sp = SubspaceProgram(compile_program(zoo(name)), Subspace(2, init="random"))
        (u,), _ = run(sp, tensors, zero, 0.1)
        torch.testing.assert_close(u, 0.1 * 0.01 * tensors[0].flatten(), rtol=1e-12, atol=1e-15)


def test_w_separable_tells_decoupled_decay_from_coupled_terms():
    assert all(w_separable(compile_program(zoo(n))) for n in ("adamw", "lion", "sgd", "adam"))
    coupled = parse_program("def f(w, g, lr, v):\n"
                            "    h = g + w * 0.01\n    v = interp(square(h), v, 0.99)\n"
                            "    update = h / sqrt(v + 1e-8)\n    return update * lr, v\n")
    trust = parse_program("def f(w, g, lr):\n    update = g * rms(w)\n    return update * lr\n")
    assert not w_separable(compile_program(coupled))
    assert not w_separable(compile_program(trust))



@pytest.mark.parametrize("body, separable", [
    ("d = w * 0.1\n    u = g + d\n    u = bias_correct(u, 0.9, step)", True),   # affine in x, the rest fixed
    ("d = w * 0.1\n    u = interp(g, d, 0.5)", True),
    ("u = g + w\n    u = tanh(u)", False),                                    # not affine
    ("u = g + w\n    u = bias_correct(u, 0.9, u)", False),                    # its step is not fixed
])
def test_w_separable_reads_linearity_from_the_op_facts(body, separable):
    program = parse_program(f"def f(w, g, lr, step):\n    {body}\n    u = u * lr\n    return u\n")
    assert w_separable(compile_program(program)) is separable


@pytest.mark.parametrize("name", ["adamw", "lion"])
@pytest.mark.parametrize("sub", [Subspace(3), Subspace(3, projection="svd", update_every=4), Subspace(2, init="random")],
                         ids=["online", "svd", "online-random"])
def test_export_matches_the_interpreter_over_steps(name, sub, tmp_path):
    torch.manual_seed(4)
    tensors = [torch.randn(9, 5, dtype=torch.float64), torch.randn(5, dtype=torch.float64),
               torch.randn(4, 12, dtype=torch.float64), torch.randn(2, 2, dtype=torch.float64)]
    grads = random_grads(tensors, 10)
    updates, _ = run(SubspaceProgram(compile_program(zoo(name)), sub), tensors, grads, 1e-2)
    expected = Layout.of(tensors).flatten(tensors) - sum(updates)
    module = import_source(export_subspace(zoo(name), sub), tmp_path, f"{name}_sub")
    cls = getattr(module, f"{name.capitalize()}Subspace" if name == "lion" else "AdamwSubspace")
    for foreach in (True, False):
        params = [torch.nn.Parameter(t.clone()) for t in tensors]
        opt = cls(params, lr=1e-2, foreach=foreach)
        for gs in grads:
            for p, g in zip(params, gs):
                p.grad = g.clone()
            opt.step()
        got = torch.cat([p.detach().flatten() for p in params])
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_exported_state_dict_loads_with_weights_only_and_resumes_exactly(tmp_path):
    module = import_source(export_subspace(zoo("adamw"), Subspace(4)), tmp_path, "adamw_sub")
    torch.manual_seed(5)
    start = [torch.randn(32, 16), torch.randn(16), torch.randn(8, 40)]
    grads = random_grads(start, 10)

    def stepped(opt, params, gs):
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt.step()

    params = [torch.nn.Parameter(t.clone()) for t in start]
    opt = module.AdamwSubspace(params, lr=1e-2)
    for gs in grads[:5]:
        stepped(opt, params, gs)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = module.AdamwSubspace(resumed_params, lr=1e-2)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for gs in grads[5:]:
        stepped(opt, params, gs)
        stepped(resumed, resumed_params, gs)
    for a, b in zip(params, resumed_params):
        assert torch.equal(a, b)
    # State bytes: m, v (32 x 4, 16, 40 x 4), P (4 x 16, 4 x 8) and its two moments, three steps.
    expected = 4 * (2 * (128 + 16 + 160) + 3 * (64 + 32)) + 3 * 8
    assert opt.state_bytes() == expected
    assert opt.state[params[0]]["m"].shape == (32, 4)


def test_bad_options_are_one_line_user_errors():
    for kwargs, words in [({"rank": 0}, "rank"), ({"rank": 2, "projection": "pca"}, "projection"),
                          ({"rank": 2, "update_every": 0}, "update_every"), ({"rank": 2, "lr_p": -1.0}, "lr_p"),
                          ({"rank": 2, "init": "zeros"}, "init")]:
        with pytest.raises(OptsearchError, match=words):
            Subspace(**kwargs)
    assert subspace_from_options(None) is None
    assert subspace_from_options(8, "svd", 50, None) == Subspace(8, "svd", update_every=50)
    assert subspace_from_options(8, lr=0.01).lr_p == 0.01
    with pytest.raises(OptsearchError, match="rank"):
        subspace_from_options(None, lr=0.1)


def test_the_evaluators_accept_the_transform_wherever_they_accept_a_program():
    from optsearch.evaluators import evaluate
    from optsearch.evaluators.train import train
    from optsearch.proxy_tasks import get_task

    sp = SubspaceProgram(compile_program(zoo("adamw")), Subspace(4))
    r = train(sp, get_task("quadratic", "small"), seeds=(0,), lr_multipliers=(1.0, 0.3))
    assert r.status == "ok" and all(m < 1.0 for m in r.metrics), r.error
    e = evaluate(sp, [("imitate", "small")], lr_multipliers=(1.0,))
    assert e.status == "ok", e.error


# Matrix ops in the subspace: every op, rows and cols included, sees the projected matrix (big x rank).

def test_muon_in_the_subspace_orthogonalizes_the_projected_momentum():
    """Step 1 of `muon` with GaLore's projection, from the ops' definitions: the momentum of the
    projected gradient `g P^T` (16 x 2) orthogonalized, scaled by max(1, 16 / 2) ** 0.5 (the projected
    matrix's rows / cols), mapped back by P; the decoupled decay on the full parameter."""
    from .test_matrix import MUON, newton_schulz

    gen = torch.Generator().manual_seed(5)
    w, g = torch.randn(2, 16, 8, generator=gen, dtype=torch.float64)
    sp = SubspaceProgram(compile_program(zoo("muon")), Subspace(2, projection="svd", update_every=100))
    assert sp.decay_on_full  # rows(w) and cols(w) read a shape only: the update stays h(g, m) + k(w)
    (u,), _ = run(sp, [w], [[g]], 0.1)
    P = torch.linalg.svd(g, full_matrices=False).Vh[:2]
    low = newton_schulz((1 - 0.9025) * (g @ P.T), *MUON, 5, 1e-7) * 8 ** 0.5
    torch.testing.assert_close(u.reshape(16, 8), 0.1 * (low @ P) + 0.1 * 0.1 * w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("sub", [Subspace(3), Subspace(3, projection="svd", update_every=4)], ids=["online", "svd"])
def test_muon_subspace_export_matches_the_interpreter(sub, tmp_path):
    torch.manual_seed(6)
    tensors = [torch.randn(9, 5, dtype=torch.float64), torch.randn(5, dtype=torch.float64),
               torch.randn(4, 12, dtype=torch.float64), torch.randn(9, 5, dtype=torch.float64)]
    grads = random_grads(tensors, 10)
    updates, _ = run(SubspaceProgram(compile_program(zoo("muon")), sub), tensors, grads, 1e-2)
    expected = Layout.of(tensors).flatten(tensors) - sum(updates)
    module = import_source(export_subspace(zoo("muon"), sub), tmp_path, "muon_sub")
    for foreach in (True, False):
        params = [torch.nn.Parameter(t.clone()) for t in tensors]
        opt = module.MuonSubspace(params, lr=1e-2, foreach=foreach)
        for gs in grads:
            for p, g in zip(params, gs):
                p.grad = g.clone()
            opt.step()
        got = torch.cat([p.detach().flatten() for p in params])
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_w_separable_reads_shapes_as_constants():
    assert w_separable(compile_program(zoo("muon"))) and w_separable(compile_program(zoo("muon_rms")))
    scaled_by_w = parse_program("def f(w, g, lr):\n    n = rms(w)\n    u = g * n\n    u = u * lr\n    return u\n")
    assert not w_separable(compile_program(scaled_by_w))
