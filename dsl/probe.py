"""The probe: fixed random inputs on which a program's behaviour is observed without training.

Two consumers read the same inputs: the search's functional fingerprint (equivalent programs
reuse one evaluation) and the exact rewrites (every rewrite is checked to keep the updates).
Two parameter tensors (a vector and a matrix, so row and col state runs too), two learning
rates, gradients of many scales (scale-invariant and scale-sensitive programs differ), all
drawn from one fixed seed in float64: the same on every machine.

A program with matrix ops is observed on a probe with a third, tall matrix (`MATRIX_PROBE_SHAPES`),
so that what depends on a matrix's shape (`max(1, rows / cols)`, the transposed Newton-Schulz) shows
in its updates; every other program keeps the two-tensor probe, and so its fingerprint. `probe_for`
picks the probe; a check that compares two programs (a rewrite) uses the original's for both.
"""
from __future__ import annotations

import torch

from optsearch.dsl.analysis import matrix_ops
from optsearch.dsl.errors import ProgramError
from optsearch.dsl.interpret import FlatReducer, Layout, compile_program
from optsearch.dsl.ir import Program

PROBE_SHAPES = (torch.Size([6]), torch.Size([4, 5]))
MATRIX_PROBE_SHAPES = (*PROBE_SHAPES, torch.Size([7, 3]))
PROBE_LRS = (1e-2, 3e-3)
PROBE_STEPS = 5
PROBE_SEED = 20230213


class Probe:
    """The inputs (`w`, one gradient per step, the learning rates) and the program runner."""

    def __init__(self, shapes: tuple[torch.Size, ...] = PROBE_SHAPES) -> None:
        gen = torch.Generator().manual_seed(PROBE_SEED)
        self.layout = Layout(shapes)
        n, b = self.layout.numel, len(PROBE_LRS)
        self.w = torch.randn(b, n, generator=gen, dtype=torch.float64)
        scales = torch.logspace(-3, 1, n, dtype=torch.float64)
        self.g = [torch.randn(b, n, generator=gen, dtype=torch.float64) * scales[torch.randperm(n, generator=gen)]
                  for _ in range(PROBE_STEPS)]
        self.lr = torch.tensor(PROBE_LRS, dtype=torch.float64).unsqueeze(-1)
        self.reducer = FlatReducer(self.layout)

    def updates(self, program: Program, steps: int = PROBE_STEPS) -> torch.Tensor:
        """`program`'s updates `(steps, lrs, N)` over the first `steps` gradients, applied as it goes;
        raises whatever the program raises on these inputs."""
        compiled = compile_program(program)
        w, state, out = self.w.clone(), compiled.init_state(self.w, self.layout), []
        with torch.no_grad():
            for t, g in enumerate(self.g[:steps], start=1):
                update, state = compiled.step_flat(w, g, self.lr, t, state, self.reducer)
                out.append(update)
                w = w - update
        return torch.stack(out)


_PROBES: dict[tuple[torch.Size, ...], Probe] = {}


def probe(shapes: tuple[torch.Size, ...] = PROBE_SHAPES) -> Probe:
    """The probe over `shapes` (default: the plain one), made on first use."""
    if shapes not in _PROBES:
        _PROBES[shapes] = Probe(shapes)
    return _PROBES[shapes]


def probe_for(program: Program) -> Probe:
    """The probe `program` is observed on: with a tall matrix if it has live matrix ops."""
    try:
        has_matrix_ops = bool(matrix_ops(program))
    except ProgramError:  # an invalid program fails on either probe alike
        has_matrix_ops = False
    return probe(MATRIX_PROBE_SHAPES if has_matrix_ops else PROBE_SHAPES)


__all__ = ["MATRIX_PROBE_SHAPES", "PROBE_LRS", "PROBE_SHAPES", "PROBE_STEPS", "Probe", "probe", "probe_for"]
