"""Data is made or shipped, never downloaded: building and training tasks opens no socket."""
from __future__ import annotations

import socket

import pytest

from optsearch.proxy_tasks import TASKS, TRAINING_TASKS, get_task
from optsearch.proxy_tasks import lm, mlp, quadratic, vit


def test_building_every_small_task_needs_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a proxy task tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for cached in (lm.corpus, lm._validation_windows, mlp._dataset, quadratic._problem,
                   vit._training_set, vit._validation_set):
        cached.cache_clear()
    for name in TRAINING_TASKS:
        task = get_task(name, "small")
        params = task.init(0)
        task.loss(params, task.batch(0, 1))
        task.metric(params)
