"""Compile a program once into a step function over torch tensors.

All parameter tensors of a model sit side by side in one flat buffer of shape `(*batch, N)`
(`Layout`), so each statement is one kernel for every parameter and every copy of the model
(seeds x learning rates x ...) at once; per-tensor reductions are segment sums over the flat
axis. Only live statements are run. Scalars (`lr`, `step`, constants) are 0-d tensors or
tensors broadcastable against `(*batch, 1)`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from optsearch.dsl.analysis import Analysis, check
from optsearch.dsl.ir import INPUTS, Const, Program
from optsearch.dsl.ops import OPS


class Layout:
    """Where each parameter tensor lives in a flat `(*batch, N)` buffer.

    `shapes` are the per-copy shapes (without the batch axes).
    """

    def __init__(self, shapes: Sequence[torch.Size], device: torch.device | str = "cpu"):
        self.shapes = [torch.Size(s) for s in shapes]
        self.numels = [s.numel() for s in self.shapes]
        self.numel = sum(self.numels)
        self.device = torch.device(device)
        sizes = torch.tensor(self.numels, device=self.device)
        self.segment = torch.repeat_interleave(torch.arange(len(self.shapes), device=self.device), sizes)
        self._counts = sizes.to(torch.float64)[self.segment]
        self._counts_by_dtype: dict[torch.dtype, Tensor] = {}

    @classmethod
    def of(cls, tensors: Sequence[Tensor], batch_dims: int = 0) -> "Layout":
        return cls([t.shape[batch_dims:] for t in tensors], tensors[0].device if tensors else "cpu")

    def flatten(self, tensors: Sequence[Tensor], batch_dims: int = 0) -> Tensor:
        """One `(*batch, N)` tensor holding a copy of `tensors`."""
        batch = tensors[0].shape[:batch_dims]
        return torch.cat([t.reshape(*batch, -1) for t in tensors], dim=-1)

    def unflatten(self, flat: Tensor) -> list[Tensor]:
        """Views into `flat`, one per parameter, shaped `(*batch, *shape)`."""
        batch = flat.shape[:-1]
        return [c.view(batch + s) for c, s in zip(flat.split(self.numels, dim=-1), self.shapes)]

    def counts(self, dtype: torch.dtype) -> Tensor:
        if dtype not in self._counts_by_dtype:
            self._counts_by_dtype[dtype] = self._counts.to(dtype)
        return self._counts_by_dtype[dtype]


class FlatReducer:
    """Per-parameter-tensor reductions over a flat `(*batch, N)` buffer (see `ops.Reducer`)."""

    def __init__(self, layout: Layout, dtype: torch.dtype | None = None):
        self.layout = layout
        self.single = len(layout.shapes) == 1
        self._dtype = dtype or torch.get_default_dtype()

    def sum(self, x: Tensor) -> Tensor:
        if self.single:
            return x.sum(-1, keepdim=True)
        seg = self.layout.segment
        out = x.new_zeros(*x.shape[:-1], len(self.layout.shapes)).index_add_(-1, seg, x)
        return out.index_select(-1, seg)

    def amax(self, x: Tensor) -> Tensor:
        if self.single:
            return x.amax(-1, keepdim=True)
        seg = self.layout.segment.expand_as(x)
        out = x.new_full((*x.shape[:-1], len(self.layout.shapes)), float("-inf"))
        return out.scatter_reduce_(-1, seg, x, "amax").index_select(-1, self.layout.segment)

    def count(self) -> Tensor:
        counts = self.layout.counts(self._dtype)
        return counts[:1] if self.single else counts  # one parameter: keep scalars `(*batch, 1)`

    def global_sum(self, x: Tensor) -> Tensor:
        return x.sum(-1, keepdim=True)

    def for_dtype(self, dtype: torch.dtype) -> "FlatReducer":
        """This reducer, with `count()` in `dtype` (the interpreter sets it once per step)."""
        self._dtype = dtype
        return self


@dataclass(frozen=True)
class _Step:
    target: int                      # slot written
    fn: Callable[..., Tensor]
    args: tuple[int, ...]            # slots read (constants have slots too)
    reduces: bool


class CompiledProgram:
    """A program turned into a list of kernel calls over slots; build once, call every step."""

    def __init__(self, program: Program, analysis: Analysis | None = None):
        self.program = program
        self.analysis = a = analysis or check(program)
        self.state_names = program.state
        params = program.params
        live = [i for i in range(len(program.body)) if i in a.live]
        # Constants keyed by repr so that -0.0 and 0.0 (equal as floats) keep their own slots.
        consts = sorted({repr(float(arg.value)): float(arg.value) for i in live
                         for arg in program.body[i].args if isinstance(arg, Const)}.items())
        slot: dict = {p: k for k, p in enumerate(params)}         # source (param or index) -> slot
        const_slot = {key: len(params) + k for k, (key, _) in enumerate(consts)}
        base = len(params) + len(consts)
        steps: list[_Step] = []
        for k, i in enumerate(live):
            s, op = program.body[i], OPS[program.body[i].op]
            args = tuple(slot[r] if r is not None else const_slot[repr(float(arg.value))]
                         for r, arg in zip(a.reads[i], s.args))
            slot[i] = base + k
            steps.append(_Step(base + k, op.impl, args, op.kind != "elementwise"))
        self._steps = steps
        self._consts = [c for _, c in consts]
        # Where each parameter slot is filled from: an input name, or an index into the state.
        self._param_sources = [p if p in INPUTS else self.state_names.index(p) for p in params]
        # A state whose new value cannot reach the update is not computed: it is carried unchanged.
        self._outputs = [slot[a.outputs[0]]] + [slot[o] if o in slot else slot[name]
                                                for o, name in zip(a.outputs[1:], program.state)]
        self._const_cache: dict[tuple, list[Tensor]] = {}

    def init_state(self, w: Tensor) -> tuple[Tensor, ...]:
        """Zero state, shaped like the flat parameter buffer `w`."""
        return tuple(torch.zeros_like(w) for _ in self.state_names)

    def _constants(self, like: Tensor) -> list[Tensor]:
        k = (like.dtype, like.device)
        if k not in self._const_cache:
            self._const_cache[k] = [torch.tensor(c, dtype=like.dtype, device=like.device) for c in self._consts]
        return self._const_cache[k]

    def step_flat(self, w: Tensor, g: Tensor, lr: float | Tensor, step: int | float | Tensor,
                  state: Sequence[Tensor], reducer: FlatReducer) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One step on flat buffers: returns `(update, new_state)`; the caller applies `w - update`.

        Only live statements run: a state whose value can never reach the update is returned unchanged.
        """
        dtype, device = w.dtype, w.device
        inputs = {"w": w, "g": g,
                  "lr": torch.as_tensor(lr, dtype=dtype, device=device),
                  "step": torch.as_tensor(step, dtype=dtype, device=device)}
        slots: list = [state[p] if isinstance(p, int) else inputs[p] for p in self._param_sources]
        slots += self._constants(w)
        slots += [None] * len(self._steps)
        red = reducer.for_dtype(dtype)
        for st in self._steps:
            args = [slots[a] for a in st.args]
            slots[st.target] = st.fn(red, *args) if st.reduces else st.fn(*args)
        outs = [slots[o] for o in self._outputs]
        update = outs[0] if outs[0].shape == w.shape else outs[0].expand_as(w)
        new_state = tuple(v if v.shape == w.shape else v.expand_as(w).clone() for v in outs[1:])
        return update, new_state


def compile_program(program: Program) -> CompiledProgram:
    """Check `program` and compile it (raises `ProgramError` if it is invalid)."""
    return CompiledProgram(program)


class ProgramOptimizer:
    """Run a compiled program over a list of parameters in place: `w <- w - update`.

    The parameters may carry `batch_dims` leading axes (many copies trained at once); `lr`
    may then be a tensor broadcastable against `(*batch, 1)`. State lives in flat buffers.
    """

    def __init__(self, program: Program | CompiledProgram, params: Sequence[Tensor], batch_dims: int = 0):
        self.compiled = program if isinstance(program, CompiledProgram) else compile_program(program)
        self.params = list(params)
        self.batch_dims = batch_dims
        self.layout = Layout.of(self.params, batch_dims)
        self.reducer = FlatReducer(self.layout)
        self.state = self.compiled.init_state(self.layout.flatten(self.params, batch_dims))
        self.steps = 0

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor], lr: float | Tensor) -> None:
        self.steps += 1
        w = self.layout.flatten(self.params, self.batch_dims)
        g = self.layout.flatten(grads, self.batch_dims)
        update, self.state = self.compiled.step_flat(w, g, lr, self.steps, self.state, self.reducer)
        for p, u in zip(self.params, self.layout.unflatten(update)):
            p.sub_(u)
