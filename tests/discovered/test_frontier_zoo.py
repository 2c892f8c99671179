"""The frontier zoo: each program's export against a reference implementation from PyPI.

Each reference is named beside its program (they differ among themselves: eps placement, the
cautious mask's normalisation, AdEMAMix's schedulers, ADOPT's clip exponent). The measure is the
relative error of the parameters' displacement after 40 steps in float64: max |d_ours - d_ref| /
max |d_ref| over each tensor, d = w_40 - w_0, which is stricter than comparing w_40 (dominated by
w_0). `python -m tests.discovered.test_frontier_zoo` prints the figures for the README.
"""
from __future__ import annotations

import math
import types

import pytest
import torch

from optsearch.discovered import load_zoo
from optsearch.dsl.export import class_name_for, export_program

STEPS = 40
TOLERANCE = 1e-12  # measured: 1e-15 to 3e-14 (discovered/README.md)


def _cautious_lion(params, lr):
    from pytorch_optimizer import Lion

    return Lion(params, lr, betas=(0.9, 0.99), weight_decay=0.01, cautious=True)


def _ademamix(params, lr):
    from pytorch_optimizer import AdEMAMix

    return AdEMAMix(params, lr, betas=(0.9, 0.999, 0.9999), alpha=5.0, weight_decay=0.01, weight_decouple=True)


def _adopt(params, lr):
    from adopt import ADOPT

    return ADOPT(params, lr)


def _laprop(params, lr):
    from pytorch_optimizer import LaProp

    return LaProp(params, lr, foreach=False)  # its foreach path rounds the step size to float32


def _adan(params, lr):
    from pytorch_optimizer import Adan

    return Adan(params, lr, weight_decay=0.02)  # weight_decouple=False: the proximal decay


def _mars(params, lr):
    from pytorch_optimizer import MARS

    return MARS(params, lr, optimize_1d=True)


def _schedulefree_adamw(params, lr):
    from schedulefree import AdamWScheduleFree

    opt = AdamWScheduleFree(params, lr, weight_decay=0.01)
    opt.train()
    return opt


def _prodigy(params, lr):
    from prodigyopt import Prodigy

    return Prodigy(params, lr)


class CautiousAdamW(torch.optim.Optimizer):
    """torch.optim.AdamW's update (its single-tensor form) with pytorch_optimizer's cautious mask
    (`BaseOptimizer.apply_cautious`) on the Adam part, before the decoupled decay, as C-Optim's
    C-AdamW does. No packaged C-AdamW installs beside this torch (timm's needs torchvision)."""

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        from pytorch_optimizer.base.optimizer import BaseOptimizer

        for group in self.param_groups:
            (b1, b2), lr = group["betas"], group["lr"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["t"] += 1
                t, m, v, g = state["t"], state["m"], state["v"], p.grad
                p.mul_(1 - lr * group["weight_decay"])
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (v.sqrt() / math.sqrt(1 - b2 ** t)).add_(group["eps"])
                update = m / (1 - b1 ** t) / denom
                BaseOptimizer.apply_cautious(update, g)
                p.add_(update, alpha=-lr)


# zoo name -> (the reference it matches, a factory with the program's settings, learning rate)
FRONTIER = {
    "cautious_adamw": ("torch.optim.AdamW + pytorch_optimizer's apply_cautious (numel / (count + 1))",
                       CautiousAdamW, 1e-2),
    "cautious_lion": ("pytorch_optimizer.Lion(cautious=True)", _cautious_lion, 1e-3),
    "ademamix": ("pytorch_optimizer.AdEMAMix (t_alpha_beta3=None)", _ademamix, 1e-2),
    "adopt": ("torch-adopt ADOPT (clip step ** 0.25)", _adopt, 1e-2),
    "laprop": ("pytorch_optimizer.LaProp(foreach=False)", _laprop, 1e-2),
    "adan": ("pytorch_optimizer.Adan (proximal decay)", _adan, 1e-2),
    "mars": ("pytorch_optimizer.MARS(optimize_1d=True)", _mars, 3e-3),
    "schedulefree_adamw": ("schedulefree.AdamWScheduleFree, train mode", _schedulefree_adamw, 1e-2),
    "prodigy": ("prodigyopt.Prodigy (one param group)", _prodigy, 1.0),
}

X = torch.randn(32, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
Y = torch.randn(32, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def _model() -> torch.nn.Module:
    torch.manual_seed(2)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()


def _exported(name: str) -> type[torch.optim.Optimizer]:
    """The export imported the way a user would: a fresh module that sees only torch."""
    program = load_zoo(name)
    module = types.ModuleType(f"exported_{name}")
    exec(compile(export_program(program), f"<exported {name}>", "exec"), module.__dict__)
    return getattr(module, class_name_for(program))


def _train(make_optimizer, steps: int = STEPS) -> list[torch.Tensor]:
    """The displacement w_steps - w_0 of each parameter of the model, trained full-batch."""
    model = _model()
    start = [p.detach().clone() for p in model.parameters()]
    opt = make_optimizer(model.parameters())
    for _ in range(steps):
        opt.zero_grad()
        ((model(X) - Y) ** 2).mean().backward()
        opt.step()
    return [p.detach() - s for p, s in zip(model.parameters(), start)]


PATHS = {"fused": {"fused": True}, "foreach": {"foreach": True}, "per_tensor": {"foreach": False}}


def relative_error(name: str, path: str) -> float:
    """The max relative error of the export's displacement against the reference's, on one code path
    (a program that declines the fused path runs its default there: the foreach path)."""
    _, make_reference, lr = FRONTIER[name]
    cls = _exported(name)
    kwargs = {} if path == "fused" and not hasattr(cls, "compiled_step") else PATHS[path]
    ours = _train(lambda ps: cls(ps, lr=lr, **kwargs))
    if kwargs.get("fused"):
        assert cls.compiled_step.error is None and cls.compiled_step.compiles > 0
    ref = _train(lambda ps: make_reference(ps, lr))
    assert all(r.abs().max() > 0 for r in ref), "the reference did not move every parameter"
    return max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(ours, ref))


@pytest.fixture(autouse=True)
def _float64():
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(dtype)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", sorted(FRONTIER))
def test_export_matches_its_reference_after_40_steps(name, path):
    pytest.importorskip({"adopt": "adopt", "schedulefree_adamw": "schedulefree", "prodigy": "prodigyopt"}.get(name, "pytorch_optimizer"))
    assert relative_error(name, path) <= TOLERANCE


def test_a_changed_constant_is_caught():
    """The measure can fail: Lion's betas without the cautious mask are far from cautious Lion."""
    pytest.importorskip("pytorch_optimizer")
    from pytorch_optimizer import Lion

    ours = _train(lambda ps: _exported("cautious_lion")(ps, lr=1e-3))
    plain = _train(lambda ps: Lion(ps, 1e-3, betas=(0.9, 0.99), weight_decay=0.01))
    assert max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(ours, plain)) > 1e-3


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    for name in sorted(FRONTIER):
        errors = [relative_error(name, path) for path in PATHS]
        print(f"| `{name}` | {FRONTIER[name][0]} | {max(errors):.1e} | {TOLERANCE:.0e} |")
