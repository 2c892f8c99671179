"""The imitation task: a program is scored by how closely its updates follow a target's."""
import math

import pytest
import torch

from optsearch.discovered import load_zoo
from optsearch.dsl import parse_program, print_program
from optsearch.dsl.roles import with_fixed_roles
from optsearch.evaluators import evaluate, train
from optsearch.evaluators.calibrate import adamw_program
from optsearch.proxy_tasks import get_task
from optsearch.proxy_tasks.references import load_references


@pytest.mark.parametrize("name, target", [("imitate", "lion_wd2"), ("imitate_rmsprop", "rmsprop")])
def test_the_target_imitates_itself_exactly_at_its_own_lr(name, target):
    task = get_task(name, "small")
    r = train(load_zoo(target), task, seeds=(0, 1), lr_multipliers=(0.3, 1.0))
    assert r.status == "ok"
    assert r.metric(0, 1) == pytest.approx(0.0, abs=1e-6) and r.metric(1, 1) == pytest.approx(0.0, abs=1e-6)
    assert r.metric(0, 0) == pytest.approx(0.49, abs=1e-6)  # (1 - 0.3)^2: the right direction, 0.3x the size


def test_no_update_scores_one_and_a_reversed_target_scores_four():
    task = get_task("imitate", "small")
    still = parse_program("def still(w, g, lr):\n    u = g * 0.0\n    return u\n")
    assert train(still, task).metrics == [pytest.approx(1.0)]
    reversed_lion = train(load_zoo("lion_wd2"), task, lr_multipliers=(-1.0,))
    assert reversed_lion.metrics == [pytest.approx(4.0)]


def test_streams_are_deterministic_and_differ_across_seeds():
    task = get_task("imitate", "small")
    a, b, c = task.stream(0), get_task("imitate", "small").stream(0), task.stream(1)
    assert torch.equal(a.u, b.u) and not torch.equal(a.u, c.u)
    assert a.w.shape == a.g.shape == a.u.shape == (task.budget.steps, sum(s.numel() for s in a.shapes))


def test_fitness_is_one_for_a_perfect_imitation_and_zero_for_adamw():
    task = get_task("imitate", "small")
    assert task.reference is not None, "imitate/small is calibrated in references.json"
    assert evaluate(load_zoo("lion_wd2"), [task]).fitness == pytest.approx(1.0)
    # the reference is AdamW at its tuned lr and weight decay: that AdamW scores 0, the zoo's below it
    ref = load_references()["imitate/small"]
    tuned = adamw_program(ref.weight_decay)
    fitness = evaluate(tuned, [task], seeds=(0, 1, 2), lr_multipliers=(ref.lr / task.budget.lr,)).fitness
    assert fitness == pytest.approx(0.0, abs=1e-6)
    assert evaluate(load_zoo("adamw"), [task], seeds=(0, 1, 2)).fitness < 0


def test_a_nan_program_is_diverged():
    task = get_task("imitate", "small")
    r = train(parse_program("def f(w, g, lr):\n    u = log(g)\n    return u\n"), task)
    assert r.status == "diverged" and r.metrics == [math.inf]


def _hidden(task) -> tuple[int, int]:
    """Where the one hidden matrix lies on the flat axis of `task`'s streams."""
    shapes, roles = task.param_shapes(), task.param_roles()
    i = roles.index("hidden")
    start = sum(s.numel() for s in shapes[:i])
    return start, start + shapes[i].numel()


def _replay(cls, kwargs: dict, stream, lo: int, hi: int, shape: torch.Size, lr: float) -> torch.Tensor:
    """A fresh torch.optim `cls` teacher-forced along `stream` on the slice lo:hi: its updates."""
    p = torch.zeros(shape, requires_grad=True)
    opt = cls([p], lr=lr, **kwargs)
    out = []
    for t in range(stream.w.shape[0]):
        with torch.no_grad():
            p.copy_(stream.w[t, lo:hi].view(shape))
        p.grad = stream.g[t, lo:hi].view(shape).clone()
        opt.step()
        out.append(stream.w[t, lo:hi] - p.detach().reshape(-1))
    return torch.stack(out)


def test_imitate_muon_records_torch_muon_on_the_hidden_matrix_and_adamw_elsewhere():
    task = get_task("imitate_muon", "small")
    assert task.param_roles().count("hidden") == 1 and task.param_shapes()[task.param_roles().index("hidden")] == (128, 128)
    s, (lo, hi) = task.stream(0), _hidden(task)
    muon = _replay(torch.optim.Muon, {"weight_decay": 0.5}, s, lo, hi, torch.Size((128, 128)), task.target_lr)
    assert torch.allclose(muon, s.u[:, lo:hi], rtol=0, atol=1e-9)
    # the update less the decay is orthogonalized: most singular values in Newton-Schulz's band near 1
    ortho = (s.u[-1, lo:hi] / task.target_lr - 0.5 * s.w[-1, lo:hi]).view(128, 128)
    sv = torch.linalg.svdvals(ortho)
    assert sv.median() > 0.6 and sv.max() < 1.3
    embedding = task.param_shapes()[0]  # the first parameter, stepped by AdamW
    adamw = _replay(torch.optim.AdamW, {}, s, 0, embedding.numel(), embedding, task.target_lr)
    assert torch.allclose(adamw, s.u[:, :embedding.numel()], rtol=0, atol=1e-9)


def test_the_muon_target_program_imitates_torch_muon_and_its_decay_is_visible():
    task, adamw = get_task("imitate_muon", "small"), load_zoo("adamw")
    target = with_fixed_roles(load_zoo("muon_wd05"), ("hidden",), {"default": adamw})
    r = evaluate(target, [task], seeds=(0, 1), lr_multipliers=(1.0,))
    assert r.scores[0].metric < 2e-3  # torch runs Newton-Schulz in bfloat16, the program in float32
    assert r.fitness > 0.997
    text = print_program(load_zoo("muon_wd05"))
    for old, new, cost in [("w * 0.5", "w * 0.0", 0.1), ("w * 0.5", "sign(w) * 0.05", 0.05),
                           ("0.9025", "0.95", 0.01)]:
        wrong = with_fixed_roles(parse_program(text.replace(old, new)), ("hidden",), {"default": adamw})
        assert evaluate(wrong, [task], seeds=(0, 1), lr_multipliers=(1.0,)).fitness < r.fitness - cost


def test_adamw_on_every_role_scores_its_error_on_the_hidden_matrix_alone():
    task = get_task("imitate_muon", "small")
    s, (lo, hi) = task.stream(0), _hidden(task)
    replayed = _replay(torch.optim.AdamW, {}, s, lo, hi, torch.Size((128, 128)), task.target_lr)
    expected = (replayed - s.u[:, lo:hi]).square().sum() / s.u.square().sum()
    metric = train(load_zoo("adamw"), task, lr_multipliers=(1.0,)).metrics[0]
    assert metric == pytest.approx(float(expected), rel=1e-4)
    assert metric > 1  # AdamW's steps on the hidden matrix are much larger than Muon's
