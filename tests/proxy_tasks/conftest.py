"""Fixtures: every task at the small size, built once per session (data sets are cached anyway)."""
from __future__ import annotations

from typing import Iterator

import pytest
import torch

from optsearch.proxy_tasks import TASKS, TRAINING_TASKS, Task, get_task


@pytest.fixture(scope="session", params=list(TRAINING_TASKS))
def task(request: pytest.FixtureRequest) -> Task:
    return get_task(request.param, "small")


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread: on a loaded 2-core machine, two threads run these small ops 5-10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
