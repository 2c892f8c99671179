from __future__ import annotations

import pytest

from pathlib import Path

from optsearch.proxy_tasks import SIZES, TASKS, TRAINING_TASKS, Task, get_task, references


def test_unknown_task_lists_the_names() -> None:
    with pytest.raises(ValueError, match="unknown task 'lmm'; choose one of: quadratic, mlp, lm"):
        get_task("lmm")


def test_unknown_size_lists_the_sizes() -> None:
    with pytest.raises(ValueError, match="unknown size 'tiny' for task 'mlp'; choose one of: small, medium, large"):
        get_task("mlp", "tiny")


def test_every_row_names_its_task_and_has_a_summary() -> None:
    assert set(TRAINING_TASKS) == {"quadratic", "mlp", "lm", "lm_smalldata", "vit", "vit_smalldata"}
    assert set(TASKS) == set(TRAINING_TASKS) | {"imitate", "imitate_rmsprop", "imitate_muon"}
    for name, info in TASKS.items():
        assert info.name == name and info.summary and info.sizes == SIZES


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TRAINING_TASKS))
def test_every_size_builds_and_grows(name: str) -> None:
    tasks = [get_task(name, size) for size in SIZES]
    counts = []
    for size, task in zip(SIZES, tasks):
        assert isinstance(task, Task) and task.name == name and task.size == size and task.description
        counts.append(sum(p.numel() for p in task.init(0).values()))
        assert task.batch(0, task.budget.steps)[0].shape[0] > 0 or name == "quadratic"
    steps = [t.budget.steps for t in tasks]
    assert steps == sorted(steps) and counts == sorted(counts)
    assert (steps[0], counts[0]) < (steps[-1], counts[-1])


def test_a_calibrated_reference_overrides_the_hand_measured_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "references.json"
    monkeypatch.setattr(references, "REFERENCES_PATH", path)
    assert get_task("mlp").reference == TASKS["mlp"].make("small").reference   # no file: the module's
    references.save_reference("mlp/small", references.Reference(metric=0.123, lr=0.02, weight_decay=0.01,
                                                                seeds=(0, 1)), path)
    assert get_task("mlp").reference == 0.123
    assert get_task("mlp", "medium").reference != 0.123
