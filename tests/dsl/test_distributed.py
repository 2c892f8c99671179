"""Distributed Lion export: workers vote on 1-bit signs with torch.distributed (gloo, loopback),
end with identical parameters, train like single-process Lion, and send 1/32 of the bytes of
an all-reduce of float32 gradients; programs that are not sign-based are refused."""
from __future__ import annotations

import importlib.util
import math
import types

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from optsearch.discovered import load_zoo, zoo_names
from optsearch.dsl import OptsearchError, Program, parse_program
from optsearch.dsl.export import class_name_for, export_distributed, export_program, split_at_sign
from optsearch.dsl.export.runtime import _pack_bits, _unpack_bits, _vote

from .program_strategies import rename

LR, STEPS, WEIGHT_DECAY, BETAS = 0.01, 200, 0.01, (0.9, 0.99)


def module_of(source: str, name: str = "exported") -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


# --- packing -------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 64, 1001])
def test_pack_unpack_round_trip(n):
    bits = torch.rand(n, generator=torch.Generator().manual_seed(n)) < 0.5
    packed = _pack_bits(bits)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(n / 8)
    assert torch.equal(_unpack_bits(packed, n), bits)


def test_packing_puts_element_k_in_bit_k_mod_8():
    bits = torch.tensor([1, 0, 0, 0, 0, 0, 0, 1, 0, 1], dtype=torch.bool)
    assert _pack_bits(bits).tolist() == [1 + 128, 2]


@pytest.mark.parametrize("vote", ["majority", "mean"])
def test_one_process_votes_for_its_own_signs_and_sends_nothing(vote):
    signs = [torch.tensor([1.0, -1.0, 0.0]), torch.tensor([[0.0], [1.0]], dtype=torch.float64)]
    votes, sent = _vote(signs, vote)
    assert sent == 0
    assert all(torch.equal(v, s) and v.dtype == s.dtype for v, s in zip(votes, signs))


# --- which programs can vote ---------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "def f(w, g, lr):\n    u = sign(g)\n    u = u * lr\n    return u\n",
    "def f(w, g, lr):\n    u = sign(g)\n    return u\n",
    "def f(w, g, lr, step, m):\n    m = interp(g, m, 0.9)\n    s = sign(m)\n    k = lr / step\n"
    "    n = norm(w)\n    k = k * n\n    u = s * k\n    u = -u\n    d = w * 0.1\n    u = d - u\n    return u, m\n",
    # interpolating toward a term in w is sign(...) * (1 - a) + a * w
    "def f(w, g, lr, m):\n    c = interp(g, m, 0.9)\n    s = sign(c)\n    m = interp(g, m, 0.99)\n    u = interp(s, w, 0.1)\n"
    "    u = u * lr\n    return u, m\n",
])
def test_sign_based_programs_split_at_their_sign(text):
    program = parse_program(text)
    split = split_at_sign(program)
    assert program.body[split.sign].op == "sign"
    assert "vote" in split.apply.params and "g" not in {a.name for s in split.apply.body for a in s.args
                                                        if hasattr(a, "name")}


@pytest.mark.parametrize("text, reason", [
    ("def f(w, g, lr):\n    u = g * lr\n    return u\n", "other than through sign"),
    ("def f(w, g, lr):\n    s = sign(g)\n    u = s + g\n    return u\n", "reads the gradient g other than through sign"),
    ("def f(w, g, lr, m):\n    s = sign(g)\n    u = s + m\n    m = interp(g, m, 0.9)\n    return u, m\n",
     "reads the state 'm' other than"),
    ("def f(w, g, lr, m):\n    s = sign(g)\n    m = interp(s, m, 0.9)\n    u = m * lr\n    return u, m\n",
     "reads the state 'm' other than"),
    ("def f(w, g, lr, m):\n    s = sign(g)\n    u = interp(s, w, m)\n    m = interp(g, m, 0.9)\n    return u, m\n",
     "`u = interp(s, w, m)` is not sign"),
    ("def f(w, g, lr, m):\n    c = interp(g, m, 0.9)\n    s = sign(c)\n    m = interp(s, m, 0.9)\n    u = s * lr\n"
     "    return u, m\n", "its state 'm' reads the sign"),
    ("def f(w, g, lr):\n    s = sign(g)\n    u = tanh(s)\n    return u\n", "line 3: `u = tanh(s)` is not sign"),
    ("def f(w, g, lr):\n    s = sign(g)\n    u = s * w\n    return u\n", "`u = s * w` is not sign"),
    ("def f(w, g, lr):\n    s = sign(g)\n    n = mean(s)\n    u = s + n\n    return u\n", "`n = mean(s)` is not sign"),
    ("def f(w, g, lr):\n    s = sign(g)\n    t = sign(w)\n    t = t * g\n    t = sign(t)\n    u = s + t\n    return u\n",
     "made of 2 signs"),
    ("def f(w, g, lr):\n    n = global_norm(g)\n    u = g / n\n    u = sign(u)\n    return u\n",
     "spans all parameters"),
    ("def f(w, g, lr):\n    u = w * lr\n    return u\n", "does not depend on the gradient"),
])
def test_programs_that_are_not_sign_based_are_refused_with_the_reason(text, reason):
    with pytest.raises(OptsearchError, match="not sign-based") as e:
        export_distributed(parse_program(text), source="my_prog.py")
    assert reason in str(e.value) and str(e.value).startswith("my_prog.py: ")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["adamw", "sgd", "lion_tanh", "lion_normalized"])
def test_zoo_programs_without_a_sign_are_refused(name):
    with pytest.raises(OptsearchError, match="not sign-based"):
        export_distributed(load_zoo(name))


# --- one process: the same optimizer as the ordinary export ---------------------------------

def mlp(extra_zero_grad: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()
    if extra_zero_grad:  # a parameter whose gradient is exactly zero: its sign is 0 on every worker
        model.idle = torch.nn.Parameter(torch.ones(5, dtype=torch.float64))
    return model


def data(workers: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(256 * workers, 8, generator=gen, dtype=torch.float64)
    y = torch.tanh(2 * x[:, :1] - x[:, 1:2]) + 0.1 * torch.randn(256 * workers, 1, generator=gen, dtype=torch.float64)
    return x, y


def loss_of(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    loss = ((model(x) - y) ** 2).mean()
    return loss + 0 * model.idle.sum() if hasattr(model, "idle") else loss


def sign_based(name: str) -> bool:
    try:
        split_at_sign(load_zoo(name))
        return True
    except OptsearchError:
        return False


SIGN_BASED = [name for name in zoo_names() if sign_based(name)]


def test_the_sign_based_zoo_programs_include_lion_signum_and_signsgd():
    assert {"lion", "signum", "signsgd"} <= set(SIGN_BASED)


@pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "per_tensor"])
@pytest.mark.parametrize("vote", ["majority", "mean"])
@pytest.mark.parametrize("name", SIGN_BASED)
def test_without_process_group_it_is_the_ordinary_export(name, vote, foreach):
    program = load_zoo(name)
    module = module_of(export_distributed(program, vote=vote))
    x, y = data(1)
    ours, ref = mlp(), mlp()
    opt = getattr(module, f"Distributed{class_name_for(program)}")(ours.parameters(), lr=LR, foreach=foreach)
    ref_opt = module_of(export_program(program)).__dict__[class_name_for(program)](ref.parameters(), lr=LR)
    for _ in range(20):
        for model, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad()
            loss_of(model, x, y).backward()
            o.step()
    assert opt.vote == vote and opt.bytes_sent == 0
    for p, q in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_state_dict_is_the_ordinary_exports():
    module = module_of(export_distributed(load_zoo("lion")))
    model = mlp()
    opt = module.DistributedLion(model.parameters(), lr=LR)
    loss_of(model, *data(1)).backward()
    opt.step()
    ref = module.Lion(mlp().parameters(), lr=LR)
    ref.load_state_dict(opt.state_dict())
    assert set(ref.state_dict()["state"][0]) == {"step", "m"}
    with pytest.raises(ValueError, match="Invalid vote"):
        module.DistributedLion(model.parameters(), vote="median")


# --- several processes (gloo on loopback) ---------------------------------------------------

def _worker(rank: int, workers: int, init: str, module_path: str, out: str, vote: str, zero_grad: bool) -> None:
    """One data-parallel worker: its own shard of the data, the exported optimizer as a user imports it."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=workers)
    try:
        spec = importlib.util.spec_from_file_location("distributed_lion", module_path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        model, (x, y) = mlp(zero_grad), data(workers)
        opt = module.DistributedLion(model.parameters(), lr=LR, vote=vote)
        sent = []
        for _ in range(STEPS):
            opt.zero_grad()
            loss_of(model, x[rank::workers], y[rank::workers]).backward()
            opt.step()
            sent.append(opt.bytes_sent)
        torch.save({"params": [p.detach() for p in model.parameters()], "sent": sent}, f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_workers(tmp_path, workers: int, vote: str = "majority", zero_grad: bool = False,
                program: Program | None = None) -> list[dict]:
    path = tmp_path / "distributed_lion.py"
    path.write_text(export_distributed(program or load_zoo("lion")))
    # Forked workers inherit what this process imported: make torch.optim's lazy imports happen once, here.
    torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(_worker, (workers, str(tmp_path / "init"), str(path), str(tmp_path), vote, zero_grad),
                       nprocs=workers, start_method=method)
    return [torch.load(tmp_path / f"{rank}.pt") for rank in range(workers)]


def simulated_distributed_lion(workers: int, vote: str, zero_grad: bool = False) -> torch.nn.Module:
    """Distributed Lion written out in one process: a momentum per worker, signs voted per element."""
    model, (x, y) = mlp(zero_grad), data(workers)
    params = list(model.parameters())
    momenta = [[torch.zeros_like(p) for p in params] for _ in range(workers)]
    for _ in range(STEPS):
        signs = []
        for k in range(workers):
            grads = torch.autograd.grad(loss_of(model, x[k::workers], y[k::workers]), params)
            signs.append([torch.sign(BETAS[0] * m + (1 - BETAS[0]) * g) for m, g in zip(momenta[k], grads)])
            momenta[k] = [BETAS[1] * m + (1 - BETAS[1]) * g for m, g in zip(momenta[k], grads)]
        with torch.no_grad():
            for j, p in enumerate(params):
                total = sum(s[j] for s in signs)
                v = torch.sign(total) if vote == "majority" else total / workers
                p.sub_(LR * (v + WEIGHT_DECAY * p))
    return model


def lion_on_the_aggregated_gradient(workers: int) -> torch.nn.Module:
    """Single-process Lion whose gradient is the mean of the workers' (equal shards: the full batch)."""
    model, (x, y) = mlp(), data(workers)
    opt = module_of(export_program(load_zoo("lion"))).Lion(model.parameters(), lr=LR)
    for _ in range(STEPS):
        opt.zero_grad()
        loss_of(model, x, y).backward()
        opt.step()
    return model


@pytest.mark.parametrize("workers", [2, 4])
def test_workers_agree_train_like_lion_and_send_a_32nd_of_the_bytes(tmp_path, workers):
    results = run_workers(tmp_path, workers)
    final = results[0]["params"]
    for r in results[1:]:  # the same result on every worker, bit for bit
        assert all(torch.equal(p, q) for p, q in zip(r["params"], final))
    # It is Distributed Lion: the majority vote of each worker's own Lion sign.
    for p, q in zip(final, simulated_distributed_lion(workers, "majority").parameters()):
        torch.testing.assert_close(p, q.detach(), rtol=1e-9, atol=1e-12)
    # Training progress: within 25% of single-process Lion on the aggregated gradient, same steps
    # (measured: 0.0109 vs 0.0174 with 2 workers, 0.0185 vs 0.0184 with 4; 0.75 at the start;
    # the noise floor is 0.01).
    x, y = data(workers)
    lion_model, model = lion_on_the_aggregated_gradient(workers), mlp()
    with torch.no_grad():
        start = loss_of(model, x, y).item()
        for p, q in zip(model.parameters(), final):
            p.copy_(q)
        ours, lion = loss_of(model, x, y).item(), loss_of(lion_model, x, y).item()
    print(f"{workers} workers: loss {ours:.4f}, single-process Lion {lion:.4f}, at the start {start:.4f}")
    assert ours < 0.05 * start and ours <= 1.25 * lion
    # Bytes: 1 bit per element and a flag byte per step, vs 4 bytes per element for float32.
    n = sum(p.numel() for p in final)
    assert all(sent == math.ceil(n / 8) + 1 for sent in results[0]["sent"])
    assert max(results[0]["sent"]) <= 4 * n / 16


def test_a_momentum_named_like_the_exporters_own_list_votes_with_two_workers(tmp_path):
    program = rename(load_zoo("lion"), {"m": "signs"})
    final = run_workers(tmp_path, 2, program=program)[0]["params"]
    for p, q in zip(final, simulated_distributed_lion(2, "majority").parameters()):
        torch.testing.assert_close(p, q.detach(), rtol=1e-9, atol=1e-12)


def test_mean_vote_and_exact_zeros_with_two_workers(tmp_path):
    """A zero sign stays zero (the second bit plane is sent), and the mean of signs is applied."""
    results = run_workers(tmp_path, 2, vote="mean", zero_grad=True)
    assert all(torch.equal(p, q) for p, q in zip(results[0]["params"], results[1]["params"]))
    for p, q in zip(results[0]["params"], simulated_distributed_lion(2, "mean", zero_grad=True).parameters()):
        torch.testing.assert_close(p, q.detach(), rtol=1e-9, atol=1e-12)
    names = [name for name, _ in mlp(extra_zero_grad=True).named_parameters()]
    idle = results[0]["params"][names.index("idle")]  # only weight decay moved it
    torch.testing.assert_close(idle, torch.full_like(idle, (1 - LR * WEIGHT_DECAY) ** STEPS))
    n = sum(p.numel() for p in results[0]["params"])
    assert all(sent == 2 * math.ceil(n / 8) + 1 for sent in results[0]["sent"])


# --- the command line ------------------------------------------------------------------------

def test_cli_exports_distributed_lion_and_refuses_adamw(tmp_path, capsys):
    from optsearch.cli import main

    out = tmp_path / "dlion.py"
    assert main(["export", "lion", "-o", str(out), "--distributed", "--vote", "mean"]) == 0
    assert "class DistributedLion" in capsys.readouterr().out
    module = module_of(out.read_text())
    assert module.DistributedLion([torch.nn.Parameter(torch.zeros(2))]).vote == "mean"
    assert main(["export", "adamw", "-o", str(tmp_path / "x.py"), "--distributed"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "adamw.py: program 'adamw' is not sign-based" in err
    assert main(["export", "lion", "-o", str(tmp_path / "x.py"), "--vote", "mean"]) == 2
    assert "--vote needs --distributed" in capsys.readouterr().err
    assert not (tmp_path / "x.py").exists()


# --- matrix ops: before the sign each worker orthogonalizes its own values; muon itself cannot vote -----

SIGN_OF_ORTHOGONALIZED = """def orthosign(w, g, lr, m):
    c = interp(g, m, 0.9)
    o = orthogonalize(c, 3.4445, -4.775, 2.0315, 5.0, 1e-07)
    s = sign(o)
    m = interp(g, m, 0.99)
    r = rows(w)
    k = sqrt(r)
    k = k * lr
    u = s * k
    return u, m
"""


def test_muon_is_refused_naming_its_orthogonalize():
    with pytest.raises(OptsearchError, match="not sign-based") as e:
        export_distributed(load_zoo("muon"), source="muon.py")
    assert "`o = orthogonalize(u, 3.4445, -4.775, 2.0315, 5.0, 1e-07)` is not sign(...) times a scale" in str(e.value)


@pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "per_tensor"])
def test_a_sign_of_an_orthogonalized_momentum_votes_and_alone_is_the_ordinary_export(foreach):
    """Matrix ops before the sign run on each worker's own momentum (the vote is on the signs of its
    orthogonalization); `rows(w)` in the scale is a shape every worker shares."""
    program = parse_program(SIGN_OF_ORTHOGONALIZED)
    split = split_at_sign(program)
    assert {program.body[i].op for i in split.local} == {"interp", "orthogonalize", "sign"}
    module = module_of(export_distributed(program))
    x, y = data(1)
    ours, ref = mlp(), mlp()
    opt = module.DistributedOrthosign(ours.parameters(), lr=LR, foreach=foreach)
    ref_opt = module_of(export_program(program)).Orthosign(ref.parameters(), lr=LR)
    for _ in range(20):
        for model, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad()
            loss_of(model, x, y).backward()
            o.step()
    for p, q in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
