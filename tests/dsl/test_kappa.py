"""Lion-kappa: Lion with decoupled weight decay lambda minimises f subject to a constraint.

With the update `lr * (grad_kappa(c) + lambda * w)` and |grad_kappa| <= 1 elementwise (sign,
tanh, clip, softsign), one step maps the box |w| <= 1/lambda into itself (lr * lambda <= 1):
|w'| <= (1 - lr lambda) |w| + lr <= 1/lambda. From outside the box the excess shrinks by
(1 - lr lambda) a step. With grad_kappa = x / rms(x) the same argument bounds rms(w) instead.
The problem: a separable convex quadratic whose unconstrained minimiser lies far outside.
"""
from __future__ import annotations

import types
from dataclasses import replace

import pytest
import torch

from optsearch.discovered import load_zoo
from optsearch.dsl import ProgramOptimizer
from optsearch.dsl.export import export_program
from optsearch.dsl.ir import Const, Program, Var

LAMBDA, LR, STEPS, D = 0.5, 0.01, 1000, 64
BOX = 1 / LAMBDA
BOX_KAPPAS = ["lion", "lion_tanh", "lion_clip", "lion_softsign"]  # |grad_kappa| <= 1


def quadratic(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(curvature, minimiser): f(x) = sum(curvature * (x - minimiser) ** 2) / 2; most entries of
    the minimiser lie in 1.5 to 3 box widths, the first eight inside the box."""
    gen = torch.Generator().manual_seed(seed)
    far = torch.empty(D, dtype=torch.float64).uniform_(1.5 * BOX, 3 * BOX, generator=gen)
    minimiser = far * torch.where(torch.rand(D, generator=gen) < 0.5, -1.0, 1.0).double()
    minimiser[:8] = torch.empty(8, dtype=torch.float64).uniform_(-0.5 * BOX, 0.5 * BOX, generator=gen)
    curvature = torch.empty(D, dtype=torch.float64).uniform_(0.5, 2.0, generator=gen)
    return curvature, minimiser


def with_weight_decay(program: Program, decay: float) -> Program:
    """`program` with the constant of its `w * c` (decoupled weight decay) statement set to `decay`."""
    body = tuple(replace(s, args=(Var("w"), Const(decay))) if s.op == "mul" and Var("w") in s.args else s
                 for s in program.body)
    assert body != program.body or decay == 0.01, "no weight decay statement found"
    return replace(program, body=body)


def train(name: str, decay: float, start: torch.Tensor) -> torch.Tensor:
    curvature, minimiser = quadratic()
    x = start.clone()
    opt = ProgramOptimizer(with_weight_decay(load_zoo(name), decay), [x])
    for _ in range(STEPS):
        opt.step([curvature * (x - minimiser)], LR)
    return x


@pytest.mark.parametrize("name", BOX_KAPPAS)
def test_weight_decay_keeps_lion_kappa_inside_the_box(name):
    """Started inside, it never leaves (tolerance: rounding only); it ends at the constrained
    minimiser clip(minimiser, -1/lambda, 1/lambda) up to Lion's oscillation of about lr."""
    x = train(name, LAMBDA, torch.zeros(D, dtype=torch.float64))
    assert x.abs().max() <= BOX + 1e-12
    _, minimiser = quadratic()
    assert (x - minimiser.clamp(-BOX, BOX)).abs().max() <= 2 * LR


@pytest.mark.parametrize("name", BOX_KAPPAS)
def test_weight_decay_pulls_lion_kappa_into_the_box_from_outside(name):
    """Started up to 1.5x outside, the excess over 1/lambda is at most
    (1 - lr * lambda) ** steps times the initial one (here 0.0067x): well within lr."""
    _, minimiser = quadratic()
    start = 1.5 * minimiser.clamp(-BOX, BOX)
    x = train(name, LAMBDA, start)
    excess = start.abs().max() - BOX
    assert x.abs().max() <= BOX + excess * (1 - LR * LAMBDA) ** STEPS + 1e-12
    assert x.abs().max() <= BOX + LR


@pytest.mark.parametrize("name", BOX_KAPPAS + ["lion_normalized"])
def test_without_weight_decay_lion_kappa_leaves_the_box(name):
    """No constraint: it walks to the unconstrained minimiser, far outside (x / rms(x) moves the
    entries of small gradient slowest: the last ones are still a few steps away)."""
    x = train(name, 0.0, torch.zeros(D, dtype=torch.float64))
    _, minimiser = quadratic()
    assert x.abs().max() > BOX + 1.0
    assert (x - minimiser).abs().max() <= (5 if name == "lion_normalized" else 2) * LR


def test_weight_decay_bounds_the_rms_of_lion_normalized():
    """kappa = sqrt(n) |x|_2 (update c / rms(c)): the constraint is rms(w) <= 1/lambda, a ball,
    not the box: single entries end well outside 1/lambda."""
    x = train("lion_normalized", LAMBDA, torch.zeros(D, dtype=torch.float64))
    rms = x.square().mean().sqrt()
    assert rms <= BOX + 1e-12
    assert rms >= BOX - 2 * LR  # the constraint is active: the unconstrained minimiser's rms is ~2.2x larger
    assert x.abs().max() > BOX + 0.5


def test_exported_lion_with_weight_decay_keeps_the_box():
    """The same result through the exported optimizer, weight_decay as a constructor argument."""
    module = types.ModuleType("exported_lion")
    exec(compile(export_program(load_zoo("lion")), "<exported lion>", "exec"), module.__dict__)
    curvature, minimiser = quadratic()
    for decay, inside in ((LAMBDA, True), (0.0, False)):
        x = torch.zeros(D, dtype=torch.float64, requires_grad=True)
        opt = module.Lion([x], lr=LR, weight_decay=decay)
        for _ in range(STEPS):
            x.grad = curvature * (x.detach() - minimiser)
            opt.step()
        assert (x.abs().max() <= BOX + 1e-12) == inside
