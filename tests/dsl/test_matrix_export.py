"""Exported matrix programs: Muon's export against torch.optim.Muon and a float64 reference of its
rule, the foreach path's one batched Newton-Schulz per matrix shape, export ≡ interpreter on every
kind of matrix view, and what every export keeps (state_dict, exact resume, param groups)."""
from __future__ import annotations

import copy
import inspect
import io
import types

import pytest
import torch

from optsearch.discovered import load_zoo
from optsearch.dsl import Program, parse_program
from optsearch.dsl.export import class_name_for, export_program

from .test_export import interpreter_vs_export
from .test_matrix import ADJUST, MUON, NS_PROGRAM, SHAPES, Float64Muon, program

MUON_REFERENCES = ADJUST  # zoo name -> torch.optim.Muon's adjust_lr_fn
# 2-D parameters, as torch.optim.Muon takes: wide, tall, square, two of one shape (one batch).
MUON_SHAPES = [(8, 4), (4, 8), (6, 6), (8, 4), (16, 3)]
PATHS = pytest.mark.parametrize("path", ["foreach", "per_tensor"])  # the fused path declines matrix ops
PATH_KWARGS = {"fused": {"fused": True}, "foreach": {"foreach": True}, "per_tensor": {"foreach": False}}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def module_of(prog: Program, class_name: str | None = None) -> types.ModuleType:
    """The exported module, imported the way a user would (a fresh module, no optsearch)."""
    module = types.ModuleType(f"exported_{prog.name}")
    exec(compile(export_program(prog, class_name), f"<exported {prog.name}>", "exec"), module.__dict__)
    return module


def exported(name: str) -> type[torch.optim.Optimizer]:
    prog = load_zoo(name)
    return getattr(module_of(prog), class_name_for(prog))


def parameters(shapes, seed: int = 6) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=torch.float64)) for s in shapes]


def train(opts_and_params, shapes, steps: int, seed: int = 7) -> None:
    """`steps` steps of every (optimizer, its parameters) on the same float64 gradients."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        grads = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
        for opt, params in opts_and_params:
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()


def max_error(ours, theirs, start) -> float:
    """Max over parameters of max |ours - theirs| / max |theirs|; the parameters must have moved."""
    moved = max(((a - w).abs().max() / w.abs().max()).item() for a, w in zip(ours, start))
    assert moved > 0.1, "the parameters must move for the comparison to mean something"
    return max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(ours, theirs))


def muon_error(name: str, make_reference, path: str, steps: int = 40, lr: float = 0.02,
               shapes: list[tuple[int, int]] = MUON_SHAPES) -> float:
    start = parameters(shapes)
    ours, theirs = copy.deepcopy(start), copy.deepcopy(start)
    train([(exported(name)(ours, lr=lr, **PATH_KWARGS[path]), ours), (make_reference(theirs, lr), theirs)],
          shapes, steps)
    return max_error(ours, theirs, start)


@PATHS
@pytest.mark.parametrize("name", sorted(MUON_REFERENCES))
def test_exported_muon_matches_torch_rule_with_float64_newton_schulz(name, path):
    err = muon_error(name, lambda ps, lr: Float64Muon(ps, lr, adjust_lr_fn=MUON_REFERENCES[name]), path)
    assert err < 1e-12  # measured: 3.4e-16 to 1.3e-15 (both programs, both paths)


@PATHS
@pytest.mark.parametrize("name", sorted(MUON_REFERENCES))
def test_exported_muon_matches_torch_optim_muon_within_its_bfloat16_newton_schulz(name, path):
    err = muon_error(name, lambda ps, lr: torch.optim.Muon(ps, lr, adjust_lr_fn=MUON_REFERENCES[name]), path)
    assert err < 5e-3  # measured: 1.5e-3 (muon), 6.6e-4 (muon_rms) on both paths; torch runs it in bfloat16


@PATHS
def test_exported_muon_wd05_is_torch_optim_muon_with_decay_half_on_square_and_wide_matrices(path):
    # imitate_muon's target: no rows/cols scaling, which torch's default adjustment makes 1 when rows <= cols.
    shapes = [(6, 6), (4, 8), (6, 6)]
    err = muon_error("muon_wd05", lambda ps, lr: Float64Muon(ps, lr, weight_decay=0.5), path, shapes=shapes)
    assert err < 1e-12


def test_exported_muon_defaults_are_torch_optim_muons():
    ours = inspect.signature(exported("muon")).parameters
    torch_muon = inspect.signature(torch.optim.Muon).parameters
    assert (ours["ns_a"].default, ours["ns_b"].default, ours["ns_c"].default) == torch_muon["ns_coefficients"].default
    assert ours["ns_steps"].default == torch_muon["ns_steps"].default
    assert ours["ns_eps"].default == torch_muon["eps"].default
    assert ours["weight_decay"].default == torch_muon["weight_decay"].default
    mu = torch_muon["momentum"].default  # Nesterov: the update reads 1 - mu^2 of g, the buffer 1 - mu
    assert ours["betas"].default == pytest.approx((mu * mu, mu), rel=1e-15)


@PATHS
def test_param_groups_have_their_own_newton_schulz_and_decay(path):
    def groups(ps, ours: bool):
        steps = {"ns_steps": 3} if ours else {"ns_steps": 3}
        coefficients = {"ns_a": 1.5, "ns_b": -0.5, "ns_c": 0.0} if ours else {"ns_coefficients": (1.5, -0.5, 0.0)}
        return [{"params": ps[:2], "lr": 0.05, "weight_decay": 0.02, **steps, **coefficients},
                {"params": ps[2:]}]

    start = parameters(MUON_SHAPES)
    ours, theirs = copy.deepcopy(start), copy.deepcopy(start)
    opt = exported("muon")(groups(ours, True), lr=0.02, **PATH_KWARGS[path])
    train([(opt, ours), (Float64Muon(groups(theirs, False), lr=0.02), theirs)], MUON_SHAPES, 20)
    assert max_error(ours, theirs, start) < 1e-12
    assert opt.param_groups[0]["ns_steps"] == 3 and opt.param_groups[1]["ns_steps"] == 5.0


@PATHS
def test_state_dict_loads_with_weights_only_and_resumes_exactly(path):
    Muon = exported("muon")
    params = parameters(MUON_SHAPES)
    opt = Muon(params, lr=0.02, **PATH_KWARGS[path])
    train([(opt, params)], MUON_SHAPES, 5)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    assert set(saved["state"][0]) == {"step", "m"}
    resumed = copy.deepcopy(params)
    opt2 = Muon(resumed, lr=0.02, **PATH_KWARGS[path])
    opt2.load_state_dict(saved)
    train([(opt, params)], MUON_SHAPES, 5, seed=8)
    train([(opt2, resumed)], MUON_SHAPES, 5, seed=8)
    for p, q in zip(params, resumed):
        assert torch.equal(p, q)


@PATHS
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", ["muon", "muon_rms", "ns"])
def test_export_matches_the_interpreter_on_every_kind_of_matrix_view(name, path, dtype):
    """Shapes side by side and apart, a 3-d parameter, a vector, a 0-d tensor, an empty one, tall ones."""
    prog = program(NS_PROGRAM) if name == "ns" else load_zoo(name)
    interpreter_vs_export(prog, path, steps=5, shapes=SHAPES, rtol=1e-9 if dtype == torch.float64 else 1e-4,
                          dtype=dtype)


def test_foreach_path_runs_one_batched_newton_schulz_per_matrix_shape():
    module = module_of(program(NS_PROGRAM), "Opt")
    calls = []
    newton_schulz = module._newton_schulz
    module._newton_schulz = lambda x, *args: (calls.append(tuple(x.shape)), newton_schulz(x, *args))[1]
    params = parameters(SHAPES)
    train([(module.Opt(params, foreach=True), params)], SHAPES, 1)
    # (4, 3) three times, (3, 2, 2) and (3, 4) both viewed as 3 x 4, then one each.
    assert sorted(calls) == sorted([(3, 4, 3), (1, 2, 5), (2, 3, 4), (1, 1, 6), (1, 1, 1), (1, 0, 3), (1, 5, 2)])
    calls.clear()
    train([(module.Opt(params, foreach=False), params)], SHAPES, 1)
    assert len(calls) == len(SHAPES) and all(len(shape) == 2 for shape in calls)


def test_a_matrix_on_another_device_or_dtype_is_its_own_batch():
    module = module_of(program(NS_PROGRAM), "Opt")
    xs = [torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float32),
          torch.randn(4, 3, dtype=torch.float64)]
    assert module._by_matrix_view(xs) == [[0, 2], [1]]
    out = module._foreach_orthogonalize(xs, *MUON, 5.0, 1e-7)
    for x, o in zip(xs, out):
        assert o.dtype == x.dtype
        torch.testing.assert_close(o, module._orthogonalize(x, *MUON, 5.0, 1e-7))


def test_orthogonalize_constants_are_named_like_torch_optim_muons():
    prog = parse_program("""def f(w, g, lr):
    o = orthogonalize(g, 1.5, -0.5, 0.0, 10.0, 0.001)
    p = orthogonalize(o, 3.0, -3.0, 1.0, 2.0, 0.0)
    u = p * lr
    return u
""")
    names = list(inspect.signature(getattr(module_of(prog, "Opt"), "Opt")).parameters)
    assert names[2:7] == ["ns_a", "ns_b", "ns_c", "ns_steps", "ns_eps"]  # the first statement's
    assert names[7:12] == ["c0", "c1", "c2", "c3", "c4"]  # a second orthogonalize: plain constants


@PATHS
def test_exported_muon_on_the_device_matches_cpu(device, path):
    start = parameters(MUON_SHAPES)
    cpu = copy.deepcopy(start)
    dev = [torch.nn.Parameter(p.detach().to(device)) for p in start]
    Muon = exported("muon")
    gen = torch.Generator().manual_seed(7)
    opt_cpu, opt_dev = Muon(cpu, lr=0.02, **PATH_KWARGS[path]), Muon(dev, lr=0.02, **PATH_KWARGS[path])
    for _ in range(10):
        grads = [torch.randn(s, generator=gen, dtype=torch.float64) for s in MUON_SHAPES]
        for p, q, g in zip(cpu, dev, grads):
            p.grad, q.grad = g.clone(), g.to(device)
        opt_cpu.step()
        opt_dev.step()
    for p, q in zip(cpu, dev):
        torch.testing.assert_close(q.detach().cpu(), p.detach(), rtol=1e-10, atol=1e-12)  # float64 both


def test_the_fused_path_declines_matrix_ops_and_the_default_takes_foreach():
    Muon = exported("muon")
    with pytest.raises(ValueError, match="matrix op"):
        Muon(parameters(MUON_SHAPES), lr=0.02, fused=True)
    ours, theirs = parameters(MUON_SHAPES), parameters(MUON_SHAPES)
    train([(Muon(ours, lr=0.02), ours), (Muon(theirs, lr=0.02, foreach=True), theirs)], MUON_SHAPES, 3)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
