"""`mlp`: a ReLU MLP classifying interleaved spirals hidden in d dimensions.

A point of the plane has radius r (uniform over the unit disk) and angle a. Its phase is
turns * r + a / 2pi plus Gaussian noise, and its class is which of `classes` equal sectors the
phase falls in: the classes are spiral arms wound around each other, so no linear boundary
separates them, and the phase noise puts a floor under the achievable cross-entropy. The other
d - 2 coordinates are label-free Gaussian noise of the same variance, and the whole point is
seen in a random orthonormal basis, so no coordinate axis is special and the network must find
the plane.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from optsearch.dsl.roles import Role
from optsearch.proxy_tasks.base import Budget, ClassificationTask, Size, generator


@dataclass(frozen=True)
class MLPConfig:
    dim: int
    classes: int
    hidden: tuple[int, ...]
    train: int                 # training examples
    budget: Budget
    val: int = 4096            # validation examples
    turns: float = 1.5         # spiral windings from the centre to radius 1
    phase_noise: float = 0.03  # std of the phase noise, in turns
    metric_chunk: int = 4096
    reference: float | None = None


# small: AdamW lr and weight decay tuned on a grid (seeds 0-1); medium: lr tuned (seed 0);
# large: a scaled guess, no reference yet.
CONFIGS: dict[str, MLPConfig] = {
    "small": MLPConfig(dim=8, classes=4, hidden=(128, 128), train=8192, turns=1.0,
                       budget=Budget(steps=1000, batch_size=128, lr=2e-2, schedule="cosine",
                                     weight_decay=0.01), reference=0.2698),
    "medium": MLPConfig(dim=16, classes=6, hidden=(256, 256, 256), train=131_072, val=8192, turns=1.5,
                        budget=Budget(steps=3000, batch_size=256, lr=2e-2, warmup=150, schedule="cosine",
                                      weight_decay=0.01), reference=0.3455),
    "large": MLPConfig(dim=32, classes=8, hidden=(512, 512, 512, 512), train=524_288, val=16384,
                       turns=2.0,
                       budget=Budget(steps=10000, batch_size=512, lr=1e-2, warmup=500, schedule="cosine",
                                     weight_decay=0.01)),
}


def spirals(n: int, cfg: MLPConfig, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """n labelled points of the spiral data set (see the module docstring), before rotation."""
    r = torch.sqrt(torch.rand(n, generator=g))                  # uniform over the unit disk
    angle = 2 * math.pi * torch.rand(n, generator=g)
    phase = cfg.turns * r + angle / (2 * math.pi) + cfg.phase_noise * torch.randn(n, generator=g)
    labels = (torch.frac(phase + 10.0) * cfg.classes).long().clamp_(max=cfg.classes - 1)
    plane = torch.stack([r * torch.cos(angle), r * torch.sin(angle)], dim=1)
    nuisance = torch.randn(n, cfg.dim - 2, generator=g) / math.sqrt(2)   # same variance as the plane
    return torch.cat([plane, nuisance], dim=1) * math.sqrt(2), labels


@lru_cache(maxsize=None)
def _dataset(size: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    cfg = CONFIGS[size]
    g = generator("mlp-data", size)
    basis, _ = torch.linalg.qr(torch.randn(cfg.dim, cfg.dim, generator=g))
    x, y = spirals(cfg.train + cfg.val, cfg, g)
    x = x @ basis
    return x[:cfg.train], y[:cfg.train], x[cfg.train:], y[cfg.train:]


class MLP(ClassificationTask):
    """See the module docstring."""

    name = "mlp"

    def __init__(self, size: Size) -> None:
        cfg = CONFIGS[size]
        self.size, self.cfg = size, cfg
        self.budget, self.reference = cfg.budget, cfg.reference
        self.x_train, self.y_train, self.x_val, self.y_val = _dataset(size)
        widths = "-".join(str(w) for w in (cfg.dim, *cfg.hidden, cfg.classes))
        epochs = cfg.budget.steps * cfg.budget.batch_size / cfg.train
        self.description = (f"MLP {widths} on {cfg.classes} spiral classes in {cfg.dim}-d, "
                            f"{cfg.train} examples (~{epochs:.1f} epochs)")

    def init(self, seed: int) -> dict[str, Tensor]:
        g = generator("mlp-init", seed)
        widths = (self.cfg.dim, *self.cfg.hidden, self.cfg.classes)
        params = {}
        for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
            last = i == len(widths) - 2
            std = (1.0 if last else math.sqrt(2.0)) / math.sqrt(fan_in)   # He init; unit-scale logits
            params[f"layers.{i}.weight"] = torch.randn(fan_in, fan_out, generator=g) * std
            params[f"layers.{i}.bias"] = torch.zeros(fan_out)
        return {k: v.to(self.device) for k, v in params.items()}

    def role(self, name: str, shape: torch.Size) -> Role:
        """The first layer's weight is the input layer (embedding), the last one's the head, the
        weights between them hidden, the biases vectors."""
        if len(shape) < 2:
            return "vector"
        layer = int(name.split(".")[1])
        return "embedding" if layer == 0 else "head" if layer == len(self.cfg.hidden) else "hidden"

    def logits(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        depth = len(self.cfg.hidden) + 1
        for i in range(depth):
            x = x @ params[f"layers.{i}.weight"] + params[f"layers.{i}.bias"]
            if i < depth - 1:
                x = torch.relu(x)
        return x



def make_mlp(size: Size) -> MLP:
    return MLP(size)
