"""The proxy-task contract: a `Budget` and the functional `Task` that the evaluators train.

A task is functional so that many copies of its model train at once under `torch.func.vmap`:
parameters are a plain `dict[str, Tensor]`, and `loss(params, batch)` and `metric(params)` are
pure functions of their arguments. The evaluator stacks B copies (seeds x learning-rate
multipliers) and runs `vmap(grad(task.loss))(stacked_params, stacked_batch)`.

Everything is deterministic: `init(seed)` and `batch(seed, step)` draw from their own
`torch.Generator` (see `generator`), never from the global RNG, and the data set itself is
made from a fixed seed, so every training seed sees the same task.
"""
from __future__ import annotations

import copy
import hashlib
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, ClassVar, Iterator, Literal

import torch
from torch import Tensor

from optsearch.dsl.roles import Role, default_role

if TYPE_CHECKING:
    from optsearch.proxy_tasks.references import Reference

Size = Literal["small", "medium", "large"]
SIZES: tuple[Size, ...] = ("small", "medium", "large")
Schedule = Literal["constant", "cosine"]


@dataclass(frozen=True)
class Budget:
    """How long a task trains and at what base learning rate.

    `lr` is AdamW's base learning rate on this task; the evaluator multiplies it by the
    program's lr multiplier and by `lr_at(step)`. `weight_decay` is the decoupled weight decay
    of the AdamW reference run (programs carry their own decay as a constant).
    """

    steps: int
    batch_size: int
    lr: float
    warmup: int = 0
    schedule: Schedule = "constant"
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup < self.steps:
            raise ValueError(f"warmup must be in [0, steps={self.steps}), got {self.warmup}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")

    def lr_at(self, step: int) -> float:
        """The schedule's multiplier of the base lr at 1-based `step`, in (0, 1].

        Linear warmup (step/warmup for the first `warmup` steps), then either constant 1 or a
        cosine from 1 down towards 0, reaching 0 one step after the last (so no step is wasted).
        """
        if not 1 <= step <= self.steps:
            raise ValueError(f"step must be in [1, {self.steps}], got {step}")
        if step <= self.warmup:
            return step / self.warmup
        if self.schedule == "constant":
            return 1.0
        progress = (step - self.warmup) / (self.steps - self.warmup + 1)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    @property
    def description(self) -> str:
        warm = f", warmup {self.warmup}" if self.warmup else ""
        return (f"{self.steps} steps x batch {self.batch_size}, lr {self.lr:g}{warm}, {self.schedule}"
                f", AdamW wd {self.weight_decay:g}")


class ProxyTask(ABC):
    """What the evaluators score a program on: a training `Task`, or an imitation task
    (`proxy_tasks.imitate`) that follows a target optimizer's updates without training a model.

    Subclasses set `name`, `size`, `budget` and `description`. `reference` is AdamW's metric at
    the budget (lower is better), None where not measured yet. `kind` says how the evaluator runs
    it: "training" or "imitation".
    """

    kind: ClassVar[str]
    name: str
    size: Size
    budget: Budget
    description: str = ""
    reference: float | None = None
    calibration: "Reference | None" = None  # the tuned AdamW run behind `reference`, when calibrated
    device: torch.device = torch.device("cpu")

    @abstractmethod
    def param_shapes(self, seed: int = 0) -> list[torch.Size]:
        """The shapes of the parameters a program steps (its optimizer state is sized by them)."""

    def param_roles(self) -> list[Role]:
        """The role of each parameter (`optsearch.dsl.roles`), in `param_shapes` order: which
        program of a role candidate steps it. By default read off the shape (`default_role`)."""
        return [default_role(s) for s in self.param_shapes()]

    def to(self, device: str | torch.device) -> "ProxyTask":
        """A copy of this task whose data lives on `device` (moved once, here)."""
        device = torch.device(device)
        moved = copy.copy(self)
        for key, value in vars(self).items():
            if isinstance(value, Tensor):
                setattr(moved, key, value.to(device))
        moved.device = device
        return moved

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}/{self.size} on {self.device}>"


class Task(ProxyTask):
    """A proxy training task: a model, its data and its budget, as pure functions over parameter
    dicts. Subclasses keep their data as `Tensor` attributes (so `to` can move them). `reference`
    is AdamW's validation metric at the budget (mean over seeds 0-2, from
    `python -m optsearch.proxy_tasks --seeds 0 1 2`).
    """

    kind = "training"

    @abstractmethod
    def init(self, seed: int) -> dict[str, Tensor]:
        """Fresh parameters on the task's device, deterministic in `seed`."""

    @abstractmethod
    def loss(self, params: dict[str, Tensor], batch: tuple[Tensor, ...]) -> Tensor:
        """Scalar training loss of `params` on `batch`; pure and vmap-able."""

    @abstractmethod
    def batch(self, seed: int, step: int) -> tuple[Tensor, ...]:
        """The training batch at 1-based `step` for data-order `seed`, on the task's device."""

    @abstractmethod
    def metric(self, params: dict[str, Tensor]) -> Tensor:
        """Validation loss on held-out data (lower is better), a scalar; pure and vmap-able."""

    def batches(self, seed: int) -> Iterator[tuple[Tensor, ...]]:
        """Every training batch of the budget, in order."""
        for step in range(1, self.budget.steps + 1):
            yield self.batch(seed, step)

    def param_shapes(self, seed: int = 0) -> list[torch.Size]:
        return [t.shape for t in self.init(seed).values()]

    def param_roles(self) -> list[Role]:
        return [self.role(name, t.shape) for name, t in self.init(0).items()]

    def role(self, name: str, shape: torch.Size) -> Role:
        """The role of parameter `name`; tasks that know their model override this."""
        return default_role(shape)


class ClassificationTask(Task):
    """A task over `(x, y)` examples scored by cross-entropy of `logits(params, x)`.

    Subclasses set `x_train`, `y_train`, `x_val`, `y_val` and `cfg` (with `train`, the number of
    training examples, and `metric_chunk`, how many validation examples to score at once).
    """

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor

    @abstractmethod
    def logits(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        """Class logits for inputs `x` (any leading dims)."""

    def loss(self, params: dict[str, Tensor], batch: tuple[Tensor, ...]) -> Tensor:
        x, y = batch
        return cross_entropy(self.logits(params, x), y)

    def batch(self, seed: int, step: int) -> tuple[Tensor, ...]:
        idx = epoch_indices(self.cfg.train, self.budget.batch_size, seed, step, self.name).to(self.device)
        return self.x_train[idx], self.y_train[idx]

    def metric(self, params: dict[str, Tensor]) -> Tensor:
        chunk = self.cfg.metric_chunk
        total = sum(cross_entropy(self.logits(params, x), y) * len(x)
                    for x, y in zip(self.x_val.split(chunk), self.y_val.split(chunk)))
        return total / len(self.x_val)


def generator(*keys: int | str) -> torch.Generator:
    """A CPU generator seeded by a hash of `keys`, so ('init', 3) and ('batch', 3, 1) differ."""
    keys = tuple(k if isinstance(k, str) else int(k) for k in keys)   # numpy/tensor ints hash alike
    digest = hashlib.blake2b(repr(keys).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


@lru_cache(maxsize=64)
def _permutation(n: int, key: tuple[int | str, ...]) -> Tensor:
    return torch.randperm(n, generator=generator(*key))


def epoch_indices(n: int, batch_size: int, seed: int, step: int, salt: str) -> Tensor:
    """Example indices of the batch at 1-based `step`: each epoch is a fresh permutation of n.

    Epochs have n // batch_size steps (the remainder is dropped); the permutation of the
    current epoch is cached, so consecutive steps cost a slice.
    """
    per_epoch = n // batch_size
    if per_epoch < 1:
        raise ValueError(f"batch_size {batch_size} exceeds the {n} training examples")
    epoch, position = divmod(step - 1, per_epoch)
    perm = _permutation(n, (salt, seed, epoch))
    return perm[position * batch_size:(position + 1) * batch_size]


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over leading dims; written with log_softmax + gather for vmap."""
    logp = torch.log_softmax(logits, dim=-1)
    return -logp.gather(-1, labels.unsqueeze(-1)).mean()
