"""The contract every task keeps at the small size: determinism, purity under vmap, learnability."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch.func import grad, vmap

from optsearch.proxy_tasks import Task

SEEDS = (0, 1, 2)


def stack(dicts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([d[k] for d in dicts]) for k in dicts[0]}


def stacked_batch(task: Task, step: int = 1) -> tuple[torch.Tensor, ...]:
    return tuple(torch.stack(parts) for parts in zip(*(task.batch(s, step) for s in SEEDS)))


def test_init_is_deterministic_in_the_seed_and_differs_across_seeds(task: Task) -> None:
    a, b, c = task.init(0), task.init(0), task.init(1)
    assert list(a) == list(b) == list(c)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert all(v.dtype == torch.float32 and v.is_floating_point() for v in a.values())


def test_init_does_not_touch_the_global_rng(task: Task) -> None:
    state = torch.random.get_rng_state()
    task.init(3), task.batch(3, 1)
    assert torch.equal(state, torch.random.get_rng_state())


def test_batch_is_deterministic_in_seed_and_step(task: Task) -> None:
    same = zip(task.batch(0, 5), task.batch(0, 5))
    assert all(torch.equal(x, y) for x, y in same)
    assert any(not torch.equal(x, y) for x, y in zip(task.batch(0, 5), task.batch(0, 6)))
    assert any(not torch.equal(x, y) for x, y in zip(task.batch(0, 5), task.batch(1, 5)))


def test_loss_and_metric_are_finite_scalars(task: Task) -> None:
    params = task.init(0)
    loss, metric = task.loss(params, task.batch(0, 1)), task.metric(params)
    assert loss.shape == () and metric.shape == ()
    assert math.isfinite(loss.item()) and math.isfinite(metric.item())


def test_the_fallback_check_catches_an_op_without_a_batching_rule() -> None:
    """Guards the two tests below: vmap's per-copy fallback warning does become an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="performance drop"):
            vmap(lambda x: x.renorm(2, 0, 1.0).sum())(torch.randn(3, 4, 4))


def test_vmapped_grad_equals_per_copy_grads_without_fallback_warnings(task: Task) -> None:
    inits = [task.init(s) for s in SEEDS]
    batches = [task.batch(s, 1) for s in SEEDS]
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # vmap's "There is a performance drop" fallback fails here
        batched = vmap(grad(task.loss))(stack(inits), stacked_batch(task))
    for i, (params, batch) in enumerate(zip(inits, batches)):
        single = grad(task.loss)(params, batch)
        for name in params:
            torch.testing.assert_close(batched[name][i], single[name], rtol=1e-5, atol=1e-5,
                                       msg=lambda m: f"{task.name}: {name}: {m}")


def test_metric_vmaps_and_equals_per_copy_metrics(task: Task) -> None:
    inits = [task.init(s) for s in SEEDS]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.no_grad():
            batched = vmap(task.metric)(stack(inits))
            single = torch.stack([task.metric(p) for p in inits])
    assert batched.shape == (len(SEEDS),)
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)


def test_fifty_adamw_steps_lower_the_training_loss(task: Task) -> None:
    budget = task.budget
    params = {k: v.clone().requires_grad_(True) for k, v in task.init(0).items()}
    probe = [task.batch(0, step) for step in (1, 2, 3, 4)]

    def probe_loss() -> float:
        with torch.no_grad():
            return sum(task.loss(params, b).item() for b in probe) / len(probe)

    before = probe_loss()
    opt = torch.optim.AdamW(params.values(), lr=budget.lr, weight_decay=budget.weight_decay)
    for step in range(1, 51):
        opt.param_groups[0]["lr"] = budget.lr * budget.lr_at(step)
        opt.zero_grad()
        task.loss(params, task.batch(0, step)).backward()
        opt.step()
    after = probe_loss()
    assert after < 0.95 * before, f"{task.name}: training loss {before:.4f} -> {after:.4f}"


def test_to_moves_every_tensor_so_init_batch_and_loss_follow(task: Task) -> None:
    """The meta device holds no data, but mixing it with a CPU tensor fails: nothing is left behind."""
    moved = task.to("meta")
    assert moved.device == torch.device("meta") and task.device == torch.device("cpu")
    params, batch = moved.init(0), moved.batch(0, 1)
    assert all(t.device.type == "meta" for t in [*params.values(), *batch])
    assert moved.loss(params, batch).device.type == "meta"
    assert moved.metric(params).device.type == "meta"
    assert task.batch(0, 1)[0].device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_loss_matches_cpu(task: Task) -> None:
    cuda = task.to("cuda")
    params, batch = cuda.init(0), cuda.batch(0, 1)
    cpu_loss = task.loss(task.init(0), task.batch(0, 1))
    torch.testing.assert_close(cuda.loss(params, batch).cpu(), cpu_loss, rtol=1e-4, atol=1e-4)
    batched = vmap(grad(cuda.loss))(stack([cuda.init(s) for s in SEEDS]),
                                   tuple(t.cuda() for t in stacked_batch(task)))
    assert all(torch.isfinite(g).all() for g in batched.values())
