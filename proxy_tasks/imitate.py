"""`imitate`: how closely a program's updates follow a target optimizer's.

The target (a zoo program such as `lion`, a `torch.optim` class such as `RMSprop`, or `torch.optim`
classes by parameter role, a `TorchSplit` such as Muon on the hidden matrices) trains the
small `mlp` task's model for `steps` steps; every step's parameters `w_t`, gradient `g_t` and the
target's update `u*_t = w_t - w_{t+1}` are recorded (one stream per seed). A candidate is run
along the same stream (teacher forcing: it sees the target's `w_t` and `g_t`, while its own
state evolves from zero) at learning rate `target_lr x multiplier`, and its metric is the
normalised squared error `sum_t |u_t - u*_t|^2 / sum_t |u*_t|^2`: 0 is a perfect imitation,
1 is no update at all. Cheap (no forward or backward passes), deterministic, and the task that
proves the search can rediscover a known optimizer (`benchmarks/rediscovery.py`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Union

import torch
from torch import Tensor

from optsearch.discovered import load_zoo, zoo_names
from optsearch.dsl import Layout, ProgramOptimizer, Role
from optsearch.dsl.roles import DEFAULT
from optsearch.proxy_tasks.base import Budget, ProxyTask, Size
from optsearch.proxy_tasks.mlp import MLP


@dataclass(frozen=True)
class Stream:
    """One recorded trajectory: flat `(steps, N)` parameters, gradients and target updates."""

    shapes: tuple[torch.Size, ...]
    w: Tensor
    g: Tensor
    u: Tensor


STEPS: dict[str, int] = {"small": 64, "medium": 200, "large": 500}


@dataclass(frozen=True)
class TorchSplit:
    """`torch.optim` classes by parameter role, all at one lr: `groups` holds `(role, class name,
    keyword arguments)`, role "default" taking every role not listed (as a role candidate's)."""

    name: str
    groups: tuple[tuple[str, str, tuple[tuple[str, object], ...]], ...]

    def optimizers(self, params: list[Tensor], roles: list[Role], lr: float) -> list[torch.optim.Optimizer]:
        listed = {role for role, _, _ in self.groups}
        out = []
        for role, cls, kwargs in self.groups:
            mine = [p for p, r in zip(params, roles) if r == role or (role == DEFAULT and r not in listed)]
            if mine:
                out.append(getattr(torch.optim, cls)(mine, lr=lr, **dict(kwargs)))
        if sum(len(g["params"]) for o in out for g in o.param_groups) != len(params):
            raise ValueError(f"{self.name}: no optimizer for some parameters (roles {sorted(set(roles))})")
        return out


Target = Union[str, TorchSplit]


class ImitationTask(ProxyTask):
    """Imitate `target`'s updates (see the module docstring). Not a training task: the
    evaluator scores it with `optsearch.evaluators.imitate`, not by training a model."""

    kind = "imitation"

    def __init__(self, name: str, size: Size, target: Target, target_lr: float) -> None:
        if isinstance(target, TorchSplit):
            bad = [cls for _, cls, _ in target.groups if not isinstance(getattr(torch.optim, cls, None), type)]
            if bad:
                raise ValueError(f"imitation target {target.name}: {bad[0]!r} is not a torch.optim class")
        elif target not in zoo_names() and not isinstance(getattr(torch.optim, target, None), type):
            raise ValueError(f"imitation target {target!r} is neither a zoo program nor a torch.optim class")
        self.name, self.size, self.target, self.target_lr = name, size, target, target_lr
        self.budget = Budget(steps=STEPS[size], batch_size=MLP(size="small").budget.batch_size, lr=target_lr)
        self.device = torch.device("cpu")
        shown = target.name if isinstance(target, TorchSplit) else target
        self.description = (f"imitate {shown} (lr {target_lr:g}) along {self.budget.steps} steps of the "
                            f"small mlp task; metric: normalised squared update error")

    def stream(self, seed: int) -> Stream:
        s = _record(self.target, self.target_lr, self.budget.steps, seed)
        if s.w.device != self.device:
            s = Stream(s.shapes, s.w.to(self.device), s.g.to(self.device), s.u.to(self.device))
        return s

    def param_shapes(self, seed: int = 0) -> list[torch.Size]:
        return list(self.stream(seed).shapes)

    def param_roles(self) -> list[Role]:
        """The roles of the small mlp model whose trajectories are recorded."""
        return MLP("small").param_roles()

    def __repr__(self) -> str:
        return f"<ImitationTask {self.name}/{self.size} target={self.target} on {self.device}>"


@lru_cache(maxsize=16)
def _record(target: Target, lr: float, steps: int, seed: int) -> Stream:
    """Train the small mlp with `target` and record (w, g, u) at every step, in float32."""
    task = MLP("small")
    params = {k: v.clone().requires_grad_(True) for k, v in task.init(seed).items()}
    tensors = list(params.values())
    if isinstance(target, TorchSplit):
        opts = target.optimizers(tensors, task.param_roles(), lr)
        step = lambda: [o.step() for o in opts]  # noqa: E731
    elif target in zoo_names():
        opt = ProgramOptimizer(load_zoo(target), tensors)
        step = lambda: opt.step([p.grad for p in tensors], lr)  # noqa: E731
    else:
        torch_opt = getattr(torch.optim, target)(tensors, lr=lr)
        step = torch_opt.step
    layout = Layout.of(tensors)
    ws, gs, us = [], [], []
    for t in range(1, steps + 1):
        for p in tensors:
            p.grad = None
        task.loss(params, task.batch(seed, t)).backward()
        with torch.no_grad():
            before = layout.flatten(tensors)
            ws.append(before)
            gs.append(layout.flatten([p.grad for p in tensors]))
            step()
            us.append(before - layout.flatten(tensors))
    return Stream(tuple(layout.shapes), torch.stack(ws), torch.stack(gs), torch.stack(us))


def make_imitate(size: Size) -> ImitationTask:
    """Imitate Lion (zoo `lion_wd2`: betas 0.9/0.99, weight decay 2) at lr 1e-3.

    The decay must be visible to selection, in size and in form. With AdamW's 0.01 it is 1e-4 of
    Lion's update along these 64 steps and worth 4e-6 of fitness. With 0.5 (zoo `lion_strong_wd`,
    the earlier target) dropping it costs 0.009 of fitness and a decay of the wrong form,
    `0.05 sign(w)`, 0.005: searches ended on such forms at 0.996. With 2, Lion's best decay on the
    small-data ViT (benchmarks/LION_REGIMES.md), they cost 0.13 and 0.07 (`0.2 sign(w)`).
    """
    return ImitationTask("imitate", size, "lion_wd2", 1e-3)


def make_imitate_rmsprop(size: Size) -> ImitationTask:
    """Imitate `torch.optim.RMSprop` (alpha 0.99, eps 1e-8) at lr 1e-3."""
    return ImitationTask("imitate_rmsprop", size, "RMSprop", 1e-3)


MUON_WD = 0.5
MUON_ADAMW = TorchSplit("Muon+AdamW", (
    ("hidden", "Muon", (("weight_decay", MUON_WD),)),
    (DEFAULT, "AdamW", ()),
))


def make_imitate_muon(size: Size) -> ImitationTask:
    """Imitate `torch.optim.Muon` (weight decay 0.5) on the hidden matrix and `torch.optim.AdamW`
    (its defaults) on the rest, both at lr 1e-3: the split Muon is used with, and the case a search
    with `roles:` (evolve hidden, AdamW fixed elsewhere) must rediscover (zoo `muon_wd05`).

    The small mlp has one hidden matrix, 128 x 128, so Muon's lr adjustment is a constant here;
    torch's default (`adjust_lr_fn=None`, max(1, rows/cols)**0.5) is 1 on a square matrix, so the
    program needs no `rows`/`cols` scaling nor a constant standing for one, and both optimizers run
    at the one lr the candidate gets. Newton-Schulz runs in bfloat16 in torch and in float32 in the
    program: the zoo target's error is 9e-4, not 0. The decay is visible to selection: dropping it
    costs 0.16 of fitness, a decay of the wrong form (`0.05 sign(w)`) 0.06, as Lion's with decay 2
    (`make_imitate`); with torch's default 0.1 they would cost about 0.008 and 0.003.
    """
    return ImitationTask("imitate_muon", size, MUON_ADAMW, 1e-3)
