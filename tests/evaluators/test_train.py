"""The evaluator trains any program on a task, many copies at once, and never crashes on a bad one."""
import math

import pytest
import torch

from optsearch.discovered import load_zoo
from optsearch.dsl import parse_program, print_program
from optsearch.evaluators import EvalJob, InlineExecutor, evaluate, train
from optsearch.evaluators.fitness import aggregate, best_over_lr, relative_fitness, task_metric
from optsearch.proxy_tasks import get_task

QUADRATIC = get_task("quadratic", "small")

NAN_PROGRAM = """
def nan(w, g, lr):
    z = g * 0.0
    u = z / 0.0
    return u
"""
OVERFLOW_PROGRAM = """
def blowup(w, g, lr):
    u = exp(g)
    u = u * 1e30
    return u
"""


def test_adamw_trains_the_quadratic_to_a_finite_metric():
    r = train(load_zoo("adamw"), QUADRATIC, seeds=(0,))
    assert r.status == "ok" and r.error is None
    assert r.steps == QUADRATIC.budget.steps
    assert all(math.isfinite(m) for m in r.metrics)


def test_same_program_task_and_seed_give_the_same_metric_twice():
    a = train(load_zoo("lion"), QUADRATIC, seeds=(3,), lr_multipliers=(0.1, 0.3))
    b = train(load_zoo("lion"), QUADRATIC, seeds=(3,), lr_multipliers=(0.1, 0.3))
    assert a.metrics == b.metrics


def test_batched_copies_equal_separate_runs():
    together = train(load_zoo("adam"), QUADRATIC, seeds=(0, 1), lr_multipliers=(0.3, 1.0))
    for si, seed in enumerate((0, 1)):
        for li, mult in enumerate((0.3, 1.0)):
            alone = train(load_zoo("adam"), QUADRATIC, seeds=(seed,), lr_multipliers=(mult,))
            assert together.metric(si, li) == pytest.approx(alone.metrics[0], rel=1e-4)


@pytest.mark.parametrize("text", [NAN_PROGRAM, OVERFLOW_PROGRAM], ids=["nan", "overflow"])
def test_programs_that_blow_up_are_diverged_long_before_the_budget(text):
    r = train(parse_program(text), QUADRATIC, seeds=(0, 1))
    assert r.status == "diverged"
    assert r.steps <= 3
    assert all(m == math.inf for m in r.metrics)


def test_a_run_without_progress_stops_early_as_hopeless():
    assert QUADRATIC.calibration is not None, "quadratic/small is calibrated in references.json"
    r = train(parse_program("def still(w, g, lr):\n    u = g * 0.0\n    return u\n"), QUADRATIC)
    assert r.status == "diverged" and r.error.startswith("hopeless")
    assert r.steps == round(0.25 * QUADRATIC.budget.steps)


def test_one_diverging_copy_does_not_spoil_the_others():
    r = train(load_zoo("sgd"), QUADRATIC, seeds=(0,), lr_multipliers=(30.0, 1e6))
    assert r.status == "ok"
    assert math.isfinite(r.metrics[0]) and r.metrics[1] == math.inf


def test_an_invalid_program_is_a_result_not_an_exception():
    bad = parse_program("def f(w, g, lr):\n    u = norm(g)\n    return u\n", validate=False)
    r = train(bad, QUADRATIC)
    assert r.status == "invalid" and "scalar" in r.error


def test_a_failing_task_is_an_error_result(monkeypatch):
    task = get_task("quadratic", "small")

    def broken(params, batch):
        raise RuntimeError("boom")

    monkeypatch.setattr(task, "loss", broken)
    r = train(load_zoo("sgd"), task)
    assert r.status == "error" and "boom" in r.error


def test_time_limit_stops_training_with_status_timeout():
    r = train(load_zoo("adamw"), QUADRATIC, time_limit=0.0)
    assert r.status == "timeout" and r.steps == 1


def test_fitness_takes_the_best_lr_per_seed_and_the_mean_over_seeds():
    metrics = [3.0, 1.0, 2.0, math.nan, 4.0, 2.0]  # 2 seeds x 3 lrs
    best, where = best_over_lr(metrics, 2, 3)
    assert best == [1.0, 2.0] and where == [1, 2]
    assert task_metric(metrics, 2, 3) == 1.5
    assert relative_fitness(1.5, 2.0) == pytest.approx(0.25)
    assert relative_fitness(math.inf, 2.0) == -math.inf
    assert aggregate([0.1, 0.3]) == pytest.approx(0.2)
    assert aggregate([0.1, -math.inf]) == -math.inf


def test_evaluate_scores_against_the_task_reference():
    task = get_task("quadratic", "small")
    task.reference = 1.0
    r = evaluate(load_zoo("adamw"), [task], seeds=(0, 1), lr_multipliers=(0.3, 1.0))
    assert r.status == "ok"
    (score,) = r.scores
    assert score.metric == pytest.approx(sum(score.per_seed) / 2)
    assert r.fitness == pytest.approx(1.0 - score.metric)
    assert r.to_json()["scores"][0]["task"] == "quadratic"


def test_inline_executor_returns_results_in_submission_order():
    ex = InlineExecutor()
    ids = [ex.submit(EvalJob(text, ("quadratic/small",), lr_multipliers=(1.0,)))
           for text in (NAN_PROGRAM, print_program(load_zoo("adam")), "not a program")]
    assert ex.pending() == 3
    results = [ex.next_result() for _ in ids]
    assert [r.job_id for r in results] == ids
    assert [r.result.status for r in results] == ["diverged", "ok", "invalid"]
    assert ex.next_result() is None and ex.pending() == 0


def test_calibration_tunes_adamw_weight_decay_and_scores_like_a_candidate():
    from optsearch.evaluators.calibrate import adamw_program, calibrate

    assert "decay = w * 0.5" in print_program(adamw_program(0.5))
    task = get_task("quadratic", "small")
    ref = calibrate(task, seeds=(0, 1), lr_multipliers=(0.5, 1.0), weight_decays=(0.0, 0.1))
    assert ref.weight_decay in (0.0, 0.1) and ref.lr in (0.5 * task.budget.lr, task.budget.lr)
    assert ref.metric <= min(ref.grid["scores"].values())  # best lr per seed beats any one lr
    assert sorted(ref.curve) == sorted({round(f * task.budget.steps) for f in (0.25, 0.5, 0.75)})
    assert ref.initial_loss is not None and ref.initial_loss > ref.curve[max(ref.curve)]


@pytest.mark.parametrize("name", ["quadratic", "mlp"])
def test_vmapped_and_looped_copies_train_alike(name):
    task = get_task(name, "small")
    kwargs = dict(seeds=(0, 1), lr_multipliers=(0.3, 1.0))
    looped = train(load_zoo("lion"), task, batching="loop", **kwargs)
    vmapped = train(load_zoo("lion"), task, batching="vmap", **kwargs)
    assert looped.status == vmapped.status == "ok"
    assert looped.metrics == pytest.approx(vmapped.metrics, rel=1e-4)
