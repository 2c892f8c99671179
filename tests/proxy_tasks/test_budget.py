from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optsearch.proxy_tasks import Budget


def test_constant_schedule_is_one_after_warmup() -> None:
    budget = Budget(steps=10, batch_size=4, lr=1e-3, warmup=4)
    assert [budget.lr_at(s) for s in range(1, 11)] == [0.25, 0.5, 0.75, 1, 1, 1, 1, 1, 1, 1]


def test_cosine_decays_from_one_towards_zero_without_a_wasted_step() -> None:
    budget = Budget(steps=100, batch_size=4, lr=1e-3, warmup=10, schedule="cosine")
    assert budget.lr_at(10) == 1.0
    assert budget.lr_at(11) == pytest.approx(1.0, abs=1e-3)
    assert 0 < budget.lr_at(100) < 1e-3
    assert budget.lr_at(55) == pytest.approx(0.5, abs=0.02)


@given(steps=st.integers(1, 5000), warmup_fraction=st.floats(0, 0.99),
       schedule=st.sampled_from(["constant", "cosine"]))
def test_multiplier_is_in_unit_interval_and_never_rises_after_warmup(
        steps: int, warmup_fraction: float, schedule: str) -> None:
    budget = Budget(steps=steps, batch_size=1, lr=1.0, warmup=int(warmup_fraction * steps),
                    schedule=schedule)  # type: ignore[arg-type]
    values = [budget.lr_at(s) for s in range(1, steps + 1)]
    assert all(0 < v <= 1 for v in values)
    after = values[budget.warmup:]
    assert all(a >= b - 1e-12 for a, b in zip(after, after[1:]))
    assert all(math.isfinite(v) for v in values)


@pytest.mark.parametrize("kwargs, message", [
    (dict(steps=0), "steps must be >= 1, got 0"),
    (dict(batch_size=0), "batch_size must be >= 1, got 0"),
    (dict(lr=-1.0), "lr must be > 0, got -1.0"),
    (dict(warmup=10), "warmup must be in [0, steps=10), got 10"),
    (dict(schedule="linear"), "schedule must be 'constant' or 'cosine', got 'linear'"),
    (dict(weight_decay=-0.1), "weight_decay must be >= 0, got -0.1"),
])
def test_bad_budgets_say_what_and_why(kwargs: dict, message: str) -> None:
    args = dict(steps=10, batch_size=4, lr=1e-3) | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        Budget(**args)


def test_step_outside_the_budget_is_an_error() -> None:
    budget = Budget(steps=10, batch_size=4, lr=1e-3)
    with pytest.raises(ValueError, match="step must be in"):
        budget.lr_at(0)
    with pytest.raises(ValueError, match="step must be in"):
        budget.lr_at(11)
