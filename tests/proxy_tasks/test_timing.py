"""One full small-budget AdamW run per task, one torch thread: wall time and the score reached.

Run with `-s` to see the table; `python -m optsearch.proxy_tasks` prints the same numbers.
"""
from __future__ import annotations

import pytest

from optsearch.proxy_tasks import TASKS, TRAINING_TASKS, get_task, train_adamw


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TRAINING_TASKS))
def test_full_small_adamw_run(name: str) -> None:   # one thread: see conftest.one_thread
    task = get_task(name, "small")
    run = train_adamw(task, seed=0)
    first, last = run.losses[0], sum(run.losses[-10:]) / 10
    print(f"\n{name:<14} {task.budget.description}: {run.seconds:.2f}s wall, {run.cpu_seconds:.2f}s CPU, "
          f"train loss {first:.4f} -> {last:.4f}, validation {run.metric:.4f}"
          + (f" (reference {task.reference:.4f})" if task.reference is not None else ""))
    assert last < 0.9 * first
    if task.reference is not None:
        assert run.metric < 1.25 * task.reference
