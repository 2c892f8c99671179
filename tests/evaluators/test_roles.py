"""The evaluator trains a role candidate with one program per group of parameters, exactly as
running each optimizer by hand on its own parameters; a plain program trains as it always has."""
import copy
import math
from dataclasses import replace

import pytest
import torch

from optsearch.discovered import load_zoo, load_zoo_candidate
from optsearch.dsl import RoleProgram, parse_candidate, print_program
from optsearch.evaluators import evaluate, train
from optsearch.proxy_tasks import get_task

QUADRATIC = get_task("quadratic", "small")
ADAMW = print_program(load_zoo("adamw"))
# AdamW twice, under two names: two groups (hidden matrices, the rest), the same numbers as one.
TWO_ADAMWS = parse_candidate(ADAMW + "\n\n" + ADAMW.replace("def adamw(", "def adamw_hidden(")
                             + '\nroles = {"hidden": adamw_hidden, "default": adamw}\n')
ONE_ADAMW = parse_candidate(ADAMW + '\nroles = {"default": adamw}\n')


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def short(name: str, steps: int) -> object:
    """Task `name` at the small size with only `steps` steps (and no early stopping)."""
    task = copy.copy(get_task(name, "small"))
    task.budget = replace(task.budget, steps=steps, warmup=min(task.budget.warmup, steps - 1))
    task.calibration = None
    return task


def by_hand(task, seed: int, mult: float) -> float:
    """lion_adamw by hand: torch.optim.AdamW on embeddings, head and vectors, Lion written out on
    the hidden matrices, the task's schedule on both; returns the validation metric."""
    params = {k: v.clone().requires_grad_(True) for k, v in task.init(seed).items()}
    roles = dict(zip(params, task.param_roles()))
    hidden = [p for k, p in params.items() if roles[k] == "hidden"]
    rest = [p for k, p in params.items() if roles[k] != "hidden"]
    assert hidden and rest
    adamw = torch.optim.AdamW(rest, lr=1.0, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    momentum = [torch.zeros_like(p) for p in hidden]
    for step in range(1, task.budget.steps + 1):
        lr = task.budget.lr * mult * task.budget.lr_at(step)
        for p in params.values():
            p.grad = None
        task.loss(params, task.batch(seed, step)).backward()
        adamw.param_groups[0]["lr"] = lr
        adamw.step()
        with torch.no_grad():
            for p, m in zip(hidden, momentum):
                c = 0.9 * m + 0.1 * p.grad
                p.sub_(lr * (torch.sign(c) + 0.01 * p))
                m.mul_(0.99).add_(p.grad, alpha=0.01)
    with torch.no_grad():
        return float(task.metric(params))


@pytest.mark.parametrize("name", ["lm", "mlp"])
def test_lion_on_hidden_and_adamw_elsewhere_equals_the_two_optimizers_by_hand(name):
    task = short(name, 12)
    candidate = load_zoo_candidate("lion_adamw")
    assert isinstance(candidate, RoleProgram)
    r = train(candidate, task, seeds=(1,), lr_multipliers=(0.3, 1.0))
    assert r.status == "ok" and r.steps == 12
    for li, mult in enumerate((0.3, 1.0)):
        assert r.metric(0, li) == pytest.approx(by_hand(task, 1, mult), rel=2e-5)
    # The roles matter: AdamW or Lion alone gives other numbers.
    for plain in ("adamw", "lion"):
        alone = train(load_zoo(plain), task, seeds=(1,), lr_multipliers=(1.0,))
        assert abs(alone.metrics[0] - r.metric(0, 1)) > 1e-3


def test_a_role_candidate_trains_the_lm_below_its_initial_loss():
    r = train(load_zoo_candidate("lion_adamw"), short("lm", 40), seeds=(0,), lr_multipliers=(0.3,))
    assert r.status == "ok" and math.isfinite(r.metrics[0])
    assert r.train_losses[0] < r.initial_loss - 0.5


@pytest.mark.parametrize("name", ["quadratic", "imitate"])
def test_a_plain_program_gives_the_numbers_it_gives_without_roles(name):
    task = get_task(name, "small")
    plain = train(load_zoo("adamw"), task, seeds=(0, 1), lr_multipliers=(0.3, 1.0))
    assert train(ONE_ADAMW, task, seeds=(0, 1), lr_multipliers=(0.3, 1.0)).metrics == plain.metrics
    grouped = train(TWO_ADAMWS, task, seeds=(0, 1), lr_multipliers=(0.3, 1.0))
    assert grouped.metrics == pytest.approx(plain.metrics, rel=1e-6)


def test_evaluate_scores_a_role_candidate_and_counts_each_groups_state():
    result = evaluate(load_zoo_candidate("lion_adamw"), [QUADRATIC], lr_multipliers=(0.3, 1.0))
    assert result.status == "ok" and math.isfinite(result.fitness)
    # quadratic/small: a 16 x 16 matrix (hidden: Lion, 1 state) and a 256-vector (AdamW, 2 states).
    assert result.state_per_param == pytest.approx((256 * 1 + 256 * 2) / 512)
    plain = evaluate(load_zoo("adamw"), [QUADRATIC], lr_multipliers=(0.3, 1.0))
    assert evaluate(ONE_ADAMW, [QUADRATIC], lr_multipliers=(0.3, 1.0)).fitness == plain.fitness


def test_a_role_candidate_with_an_invalid_program_is_scored_invalid_not_raised():
    bad = RoleProgram((replace(load_zoo("lion"), returns=("update",)), load_zoo("adamw")),
                      (("hidden", "lion"), ("default", "adamw")))
    result = evaluate(bad, [QUADRATIC], lr_multipliers=(1.0,))
    assert result.status == "invalid" and result.fitness == -math.inf
    assert "function 'lion'" in result.error


def test_vmapped_and_looped_passes_train_a_role_candidate_alike():
    task = short("mlp", 20)
    kwargs = dict(seeds=(0, 1), lr_multipliers=(0.3,))
    looped = train(load_zoo_candidate("lion_adamw"), task, batching="loop", **kwargs)
    vmapped = train(load_zoo_candidate("lion_adamw"), task, batching="vmap", **kwargs)
    assert looped.status == vmapped.status == "ok"
    assert vmapped.metrics == pytest.approx(looped.metrics, rel=1e-4)


def muon_adamw_by_hand(task, seed: int, mult: float) -> float:
    """muon_adamw by hand: torch.optim.Muon (`adjust_lr_fn="match_rms_adamw"`) on the hidden matrices,
    torch.optim.AdamW on the rest, one lr and one weight decay, the task's schedule on both."""
    params = {k: v.clone().requires_grad_(True) for k, v in task.init(seed).items()}
    roles = dict(zip(params, task.param_roles()))
    hidden = [p for k, p in params.items() if roles[k] == "hidden"]
    rest = [p for k, p in params.items() if roles[k] != "hidden"]
    muon = torch.optim.Muon(hidden, lr=1.0, weight_decay=0.01, adjust_lr_fn="match_rms_adamw")
    adamw = torch.optim.AdamW(rest, lr=1.0, weight_decay=0.01)
    for step in range(1, task.budget.steps + 1):
        lr = task.budget.lr * mult * task.budget.lr_at(step)
        for p in params.values():
            p.grad = None
        task.loss(params, task.batch(seed, step)).backward()
        for opt in (muon, adamw):
            opt.param_groups[0]["lr"] = lr
            opt.step()
    with torch.no_grad():
        return float(task.metric(params))


@pytest.mark.parametrize("name", ["lm", "vit"])
def test_muon_adamw_trains_as_torch_muon_on_hidden_matrices_and_adamw_elsewhere(name):
    task = short(name, 12)
    r = train(load_zoo_candidate("muon_adamw"), task, seeds=(0,), lr_multipliers=(1.0, 3.0))
    assert r.status == "ok"
    for li, mult in enumerate((1.0, 3.0)):
        # torch.optim.Muon runs Newton-Schulz in bfloat16, the program in float32: measured within
        # 2e-5 after 12 steps; Muon's own decay (0.1) instead of AdamW's misses by 1.8e-4 on vit.
        assert r.metric(0, li) == pytest.approx(muon_adamw_by_hand(task, 0, mult), rel=1e-4)
    alone = train(load_zoo_candidate("adamw"), task, seeds=(0,), lr_multipliers=(3.0,))
    assert abs(alone.metrics[0] - r.metric(0, 1)) > 1e-2


def test_a_job_carrying_a_role_candidates_text_is_evaluated_as_the_candidate():
    from optsearch.dsl import print_candidate
    from optsearch.evaluators import EvalJob, run_job
    from optsearch.evaluators.executor import SubspaceOptions

    candidate = load_zoo_candidate("lion_adamw")
    job = EvalJob(print_candidate(candidate), ("quadratic/small",), (0,), (0.3, 1.0))
    result = run_job(job)
    assert result.status == "ok"
    assert result.fitness == evaluate(candidate, [QUADRATIC], lr_multipliers=(0.3, 1.0)).fitness
    assert result.fitness != run_job(replace(job, program=print_program(load_zoo("lion")))).fitness
    refused = run_job(replace(job, subspace=SubspaceOptions(rank=4)))
    assert refused.status == "invalid" and "role candidate" in refused.error
