"""`quadratic`: ill-conditioned quadratics with noisy gradients, a sanity task that runs in seconds.

Two parameter tensors with the same objective form, f = 0.5 * mean((w - c)^T H (w - c)):

- `diag`, a vector whose curvatures are log-spaced over [1/kappa, 1] along the axes;
- `rotated`, a matrix W whose curvatures (the same range) lie along a random basis instead:
  the objective is 0.5 * mean(S * (U^T (W - C) V)^2) with random orthogonal U, V, so a
  per-coordinate preconditioner (Adam, sign methods) cannot undo the conditioning.

The batch is gradient noise, N(0, noise^2 / batch_size) per coordinate, entering the loss as a
linear term, so the gradient is the exact one plus noise and `batch_size` sets the noise level.
The metric is the noise-free objective f (0 at the optimum).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from optsearch.proxy_tasks.base import Budget, Size, Task, generator


@dataclass(frozen=True)
class QuadraticConfig:
    dim: int          # length of the axis-aligned vector
    side: int         # the rotated block is side x side
    kappa: float      # condition number of each block
    noise: float      # gradient-noise std at batch size 1
    budget: Budget
    reference: float | None = None


# lr tuned for AdamW on a grid at every size (0.01-0.3, seed 0); references: mean of seeds 0-2.
CONFIGS: dict[str, QuadraticConfig] = {
    "small": QuadraticConfig(dim=256, side=16, kappa=1e3, noise=0.3,
                             budget=Budget(steps=200, batch_size=16, lr=0.1, schedule="cosine"),
                             reference=0.000997),
    "medium": QuadraticConfig(dim=4096, side=64, kappa=1e4, noise=0.3,
                              budget=Budget(steps=1000, batch_size=16, lr=0.03, schedule="cosine"),
                              reference=0.000425),
    "large": QuadraticConfig(dim=65536, side=256, kappa=1e5, noise=0.3,
                             budget=Budget(steps=5000, batch_size=16, lr=0.03, schedule="cosine"),
                             reference=0.000145),
}


def _spectrum(n: int, kappa: float, g: torch.Generator) -> Tensor:
    """n curvatures log-spaced over [1/kappa, 1], in random order."""
    h = torch.logspace(0.0, -math.log10(kappa), n)
    return h[torch.randperm(n, generator=g)]


def _rotation(n: int, g: torch.Generator) -> Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float()


@lru_cache(maxsize=None)
def _problem(size: str) -> dict[str, Tensor]:
    """Curvatures, rotations and optimum of one size, made once from a fixed seed."""
    cfg = CONFIGS[size]
    g = generator("quadratic", size)
    return {
        "h_diag": _spectrum(cfg.dim, cfg.kappa, g),
        "h_rot": _spectrum(cfg.side * cfg.side, cfg.kappa, g).reshape(cfg.side, cfg.side),
        "left": _rotation(cfg.side, g),
        "right": _rotation(cfg.side, g),
        "c_diag": torch.randn(cfg.dim, generator=g),
        "c_rot": torch.randn(cfg.side, cfg.side, generator=g),
    }


class Quadratic(Task):
    """See the module docstring."""

    name = "quadratic"

    def __init__(self, size: Size = "small") -> None:
        cfg = CONFIGS[size]
        self.size, self.cfg = size, cfg
        self.budget, self.reference = cfg.budget, cfg.reference
        self.description = (f"noisy quadratic, {cfg.dim} axis-aligned + {cfg.side}x{cfg.side} rotated "
                            f"coordinates, condition number {cfg.kappa:g}")
        problem = _problem(size)
        self.h_diag, self.h_rot = problem["h_diag"], problem["h_rot"]
        self.left, self.right = problem["left"], problem["right"]
        self.c_diag, self.c_rot = problem["c_diag"], problem["c_rot"]
        self.count = cfg.dim + cfg.side * cfg.side

    def init(self, seed: int) -> dict[str, Tensor]:
        g = generator("quadratic-init", seed)
        cfg = self.cfg
        params = {"diag": torch.randn(cfg.dim, generator=g),
                  "rotated": torch.randn(cfg.side, cfg.side, generator=g)}
        return {k: v.to(self.device) for k, v in params.items()}

    def objective(self, params: dict[str, Tensor]) -> Tensor:
        """The noise-free objective, 0.5 * mean over coordinates of (w - c)^T H (w - c)."""
        d = params["diag"] - self.c_diag
        r = self.left.T @ (params["rotated"] - self.c_rot) @ self.right
        total = (self.h_diag * d * d).sum() + (self.h_rot * r * r).sum()
        return 0.5 * total / self.count

    def loss(self, params: dict[str, Tensor], batch: tuple[Tensor, ...]) -> Tensor:
        noise_diag, noise_rot = batch
        linear = (noise_diag * params["diag"]).sum() + (noise_rot * params["rotated"]).sum()
        return self.objective(params) + linear / self.count

    def batch(self, seed: int, step: int) -> tuple[Tensor, ...]:
        g = generator("quadratic-batch", seed, step)
        std = self.cfg.noise / self.budget.batch_size ** 0.5
        noise = torch.randn(self.count, generator=g) * std
        rotated = noise[self.cfg.dim:].reshape(self.cfg.side, self.cfg.side)
        return noise[:self.cfg.dim].to(self.device), rotated.to(self.device)

    def metric(self, params: dict[str, Tensor]) -> Tensor:
        return self.objective(params)
