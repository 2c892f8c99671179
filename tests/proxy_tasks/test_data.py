"""What each task's data is: its shape, balance and the properties the docstrings promise."""
from __future__ import annotations

import torch

from optsearch.proxy_tasks import get_task
from optsearch.proxy_tasks import lm as lm_module
from optsearch.proxy_tasks.base import epoch_indices, generator
from optsearch.proxy_tasks.vit import CLASSES, shapes


def test_epochs_visit_every_example_once() -> None:
    n, batch = 100, 8
    per_epoch = n // batch
    seen = torch.cat([epoch_indices(n, batch, 0, step, "t") for step in range(1, per_epoch + 1)])
    assert len(set(seen.tolist())) == per_epoch * batch
    assert not torch.equal(epoch_indices(n, batch, 0, 1, "t"), epoch_indices(n, batch, 0, per_epoch + 1, "t"))


def test_quadratic_metric_is_zero_at_the_optimum_and_the_noise_averages_out() -> None:
    task = get_task("quadratic")
    optimum = {"diag": task.c_diag.clone(), "rotated": task.c_rot.clone()}
    assert task.metric(optimum).item() < 1e-10
    params = task.init(0)
    draws = torch.stack([torch.cat([b.reshape(-1) for b in task.batch(0, s)]) for s in range(1, 201)])
    expected = task.cfg.noise / task.budget.batch_size ** 0.5   # per draw; the mean of 200 shrinks
    assert abs(draws.std().item() - expected) < 0.05 * expected
    assert abs(draws.mean(0).std().item() - expected / 200 ** 0.5) < 0.2 * expected / 200 ** 0.5
    assert abs(draws.mean().item()) < 3 * expected / draws.numel() ** 0.5
    assert torch.isclose(task.loss(params, tuple(torch.zeros_like(b) for b in task.batch(0, 1))),
                         task.metric(params))


def test_quadratic_rotated_block_is_not_axis_aligned() -> None:
    task = get_task("quadratic")
    basis = task.left
    assert torch.allclose(basis.T @ basis, torch.eye(len(basis)), atol=1e-5)
    assert (basis.abs().max(dim=0).values < 0.9).all()   # no column is close to a coordinate axis


def test_mlp_classes_are_balanced_and_not_linearly_separable() -> None:
    task = get_task("mlp")
    counts = torch.bincount(task.y_train, minlength=task.cfg.classes).float()
    assert counts.min() > 0.8 * counts.mean()
    # least squares onto one-hot labels: a linear classifier stays far below the MLP's ~90%
    x = torch.cat([task.x_train, torch.ones(len(task.x_train), 1)], dim=1)
    onehot = torch.nn.functional.one_hot(task.y_train, task.cfg.classes).float()
    w = torch.linalg.lstsq(x, onehot).solution
    accuracy = ((x @ w).argmax(1) == task.y_train).float().mean().item()
    assert accuracy < 0.45


def test_shape_images_cover_every_class_and_are_standardised() -> None:
    images, labels = shapes(800, 16, 0.3, generator("test"))
    assert images.shape == (800, 16, 16)
    assert set(labels.tolist()) == set(range(len(CLASSES)))
    torch.testing.assert_close(images.mean(dim=(1, 2)), torch.zeros(800), atol=1e-5, rtol=0)
    # noise-free class means differ: the classes are drawable, not noise
    clean, clean_labels = shapes(4000, 16, 0.0, generator("test"))
    means = torch.stack([clean[clean_labels == k].mean(0) for k in range(len(CLASSES))])
    assert torch.cdist(means.flatten(1), means.flatten(1)).fill_diagonal_(1).min() > 0.1


def test_vit_validation_set_is_shared_by_sizes_and_disjoint_from_training() -> None:
    small, smalldata = get_task("vit"), get_task("vit_smalldata")
    assert small.x_val is smalldata.x_val
    assert not torch.equal(small.x_train[:10], smalldata.x_train[:10])


def test_lm_corpus_is_split_and_fingerprinted() -> None:
    train, val, digest = lm_module.corpus()
    assert len(train) > 400_000 and len(val) > 40_000
    assert train.max() < lm_module.VOCAB_SIZE and train.min() >= 0
    assert len(digest) == 64
    task = get_task("lm")
    assert task.corpus == digest and digest[:8] in task.description
    inputs, targets = task.batch(0, 1)
    assert torch.equal(inputs[:, 1:], targets[:, :-1])
    assert lm_module.corpus_matches_known() == (digest in lm_module.KNOWN_CORPORA.values())


def test_lm_metric_covers_the_validation_split() -> None:
    task = get_task("lm")
    val = lm_module.corpus()[1]
    assert task.val_windows.shape[1] == task.cfg.context + 1
    assert len(val) - task.val_windows.numel() < task.cfg.context + 1
    assert torch.equal(task.val_windows.reshape(-1), val[:task.val_windows.numel()])


def test_lm_smalldata_uses_a_prefix_of_the_training_split() -> None:
    task = get_task("lm_smalldata")
    full = lm_module.corpus()[0]
    assert len(task.train_ids) == task.cfg.train_chars
    assert torch.equal(task.train_ids, full[:task.cfg.train_chars])
