"""The imitation task: a program is scored by how closely its updates follow a target's."""
import math

import pytest
import torch

from optsearch.discovered import load_zoo
from optsearch.dsl import parse_program
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
