"""The table of proxy tasks: `TASKS` describes them, `get_task` builds one."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

from optsearch.proxy_tasks import references
from optsearch.proxy_tasks.base import SIZES, ProxyTask, Size
from optsearch.proxy_tasks.imitate import make_imitate, make_imitate_muon, make_imitate_rmsprop
from optsearch.proxy_tasks.lm import make_lm, make_lm_smalldata
from optsearch.proxy_tasks.mlp import make_mlp
from optsearch.proxy_tasks.quadratic import Quadratic
from optsearch.proxy_tasks.vit import make_vit, make_vit_smalldata


@dataclass(frozen=True)
class TaskInfo:
    """One row of `TASKS`: what the task is and how to build it at a size."""

    name: str
    summary: str
    make: Callable[[Size], ProxyTask]
    sizes: tuple[Size, ...] = SIZES
    kind: Literal["training", "imitation"] = "training"  # imitation tasks have no model to train


TASKS: dict[str, TaskInfo] = {info.name: info for info in [
    TaskInfo("quadratic", "ill-conditioned quadratics (axis-aligned and rotated) with noisy gradients; "
             "metric: noise-free objective", Quadratic),
    TaskInfo("mlp", "MLP classifying interleaved spirals hidden in d dimensions; metric: validation "
             "cross-entropy", make_mlp),
    TaskInfo("lm", "causal char-level transformer on CPython's pydoc topics; metric: validation "
             "cross-entropy (nats/char)", make_lm),
    TaskInfo("lm_smalldata", "the lm model on 50k characters for many epochs; metric: validation "
             "cross-entropy", make_lm_smalldata),
    TaskInfo("vit", "vision transformer on procedural noisy shape images, 8 classes; metric: validation "
             "cross-entropy", make_vit),
    TaskInfo("vit_smalldata", "the vit model on few images for ~30 epochs (favours sign-momentum); "
             "metric: validation cross-entropy", make_vit_smalldata),
    TaskInfo("imitate", "follow Lion's updates (weight decay 2) along its own recorded trajectories on the mlp "
             "model; metric: normalised squared update error (0 = Lion)", make_imitate, kind="imitation"),
    TaskInfo("imitate_rmsprop", "follow torch.optim.RMSprop's updates the same way; metric: normalised "
             "squared update error", make_imitate_rmsprop, kind="imitation"),
    TaskInfo("imitate_muon", "follow torch.optim.Muon (weight decay 0.5) on the hidden matrix and torch.optim.AdamW "
             "on the rest the same way; metric: normalised squared update error", make_imitate_muon,
             kind="imitation"),
]}


TRAINING_TASKS: tuple[str, ...] = tuple(n for n, info in TASKS.items() if info.kind == "training")


def get_task(name: str, size: str = "small") -> ProxyTask:
    """Build task `name` at `size`; unknown names or sizes raise ValueError listing the choices.

    Its `reference` is the calibrated one in references.json when there is one, else the
    module's hand-measured value (torch AdamW at the budget, mean of seeds 0-2), else None.
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    info = TASKS[name]
    if size not in info.sizes:
        raise ValueError(f"unknown size {size!r} for task {name!r}; choose one of: {', '.join(info.sizes)}")
    task = info.make(size)  # type: ignore[arg-type]
    calibrated = references.load_references(references.REFERENCES_PATH).get(f"{name}/{size}")
    if calibrated is not None:
        task.reference = calibrated.metric
        task.calibration = calibrated
    return task
