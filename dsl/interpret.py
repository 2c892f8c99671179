"""Compile a program once into a step function over torch tensors.

All parameter tensors of a model sit side by side in one flat buffer of shape `(*batch, N)`
(`Layout`), so each statement is one kernel for every parameter and every copy of the model
(seeds x learning rates x ...) at once; per-tensor reductions are segment sums over the flat
axis. Only live statements are run. Scalars (`lr`, `step`, constants) are 0-d tensors or
tensors broadcastable against `(*batch, 1)`.

Factored state: `row` and `col` values (one number per row / column of each parameter seen as a
matrix, `matrix_shape`) live in flat `(*batch, R)` and `(*batch, C)` buffers described by the
layout's companions `layout.rows` and `layout.cols`. Where an elementwise op mixes them with
tensors, the compiled program gathers them onto the `(*batch, N)` axis first (one `index_select`),
so every statement is still one kernel for all tensors and copies. A per-tensor scalar (a
reduction's result) lives on the axis of the value it reduced, and is gathered the same way.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Sequence

import torch
from torch import Tensor

from optsearch.dsl.analysis import INPUT_TYPES, Analysis, check, join
from optsearch.dsl.ir import INPUTS, Const, Program
from optsearch.dsl.ops import OPS


def matrix_shape(shape: Sequence[int]) -> tuple[int, int]:
    """A parameter of `shape` seen as a matrix, for row and col values: `(a, *rest)` is
    `(a, prod(rest))`, a vector `(n,)` is one row `(1, n)`, a 0-d tensor is `(1, 1)`."""
    shape = tuple(shape)
    if len(shape) < 2:
        return 1, (shape[0] if shape else 1)
    return shape[0], math.prod(shape[1:])


class Layout:
    """Where each parameter tensor lives in a flat `(*batch, N)` buffer.

    `shapes` are the per-copy shapes (without the batch axes). `rows` and `cols` are the layouts
    of row and col values (`matrix_shape`), built when first used.
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

    # Rows and columns (factored state).

    @cached_property
    def rows(self) -> "Layout":
        """The layout of row values: `matrix_shape(shape)[0]` of them per parameter."""
        return Layout([(matrix_shape(s)[0],) for s in self.shapes], self.device)

    @cached_property
    def cols(self) -> "Layout":
        """The layout of col values: `matrix_shape(shape)[1]` of them per parameter."""
        return Layout([(matrix_shape(s)[1],) for s in self.shapes], self.device)

    def part(self, kind: str) -> "Layout":
        """The layout of `kind` ("tensor", "row" or "col") values."""
        return {"tensor": self, "row": self.rows, "col": self.cols}[kind]

    @cached_property
    def starts(self) -> Tensor:
        """Where each parameter starts on the flat axis."""
        sizes = torch.tensor(self.numels, device=self.device)
        return torch.cumsum(sizes, 0) - sizes

    def index(self, src: str, dst: str, per_tensor: bool) -> Tensor:
        """For each position of a `dst` buffer, the position of a `src` buffer it reads: the row
        (or col) of each element (`dst` "tensor"), or for a per-tensor scalar, its tensor's first
        position. Also the target of each element when summing it into its row or col."""
        key = (src, dst, per_tensor)
        cache = self.__dict__.setdefault("_index", {})
        if key not in cache:
            a, b = self.part(src), self.part(dst)
            if per_tensor:
                cache[key] = a.starts[b.segment].clamp(max=max(a.numel - 1, 0))  # (an empty tensor: anything)
            else:
                assert dst == "tensor" and src in ("row", "col"), (src, dst)
                cols = torch.tensor([matrix_shape(s)[1] for s in self.shapes], device=self.device)[self.segment]
                local = torch.arange(self.numel, device=self.device) - self.starts[self.segment]
                cache[key] = a.starts[self.segment] + (local // cols if src == "row" else local % cols)
        return cache[key]

    @cached_property
    def matrix_groups(self) -> list["MatrixGroup"]:
        """The parameters grouped by matrix view (`matrix_shape`), for matrix ops: one batched matmul
        chain per group. Parameters with no elements are left out (a matrix op has nothing to do)."""
        by_shape: dict[tuple[int, int], list[int]] = {}
        for k, s in enumerate(self.shapes):
            if self.numels[k]:
                by_shape.setdefault(matrix_shape(s), []).append(k)
        starts = [0]
        for n in self.numels:
            starts.append(starts[-1] + n)
        groups = []
        for (m, n), members in by_shape.items():
            side_by_side = all(starts[a + 1] == starts[b] for a, b in zip(members, members[1:]))
            span = slice(starts[members[0]], starts[members[-1] + 1]) if side_by_side else None
            groups.append(MatrixGroup(m, n, tuple(members), tuple(starts[k] for k in members), span))
        return groups

    def matrix_counts(self, axis: int, dtype: torch.dtype) -> Tensor:
        """For each element, the row count (`axis` 0) or column count (1) of its parameter's matrix view."""
        key = (axis, dtype)
        cache = self.__dict__.setdefault("_matrix_counts", {})
        if key not in cache:
            per_tensor = torch.tensor([matrix_shape(s)[axis] for s in self.shapes], device=self.device)
            cache[key] = per_tensor[self.segment].to(dtype)
        return cache[key]

    def factor_counts(self, kind: str, dtype: torch.dtype) -> Tensor:
        """Elements per row (`kind` "row": the number of columns) or per column."""
        key = (kind, dtype)
        cache = self.__dict__.setdefault("_factor_counts", {})
        if key not in cache:
            other = 1 if kind == "row" else 0
            per_tensor = torch.tensor([matrix_shape(s)[other] for s in self.shapes], device=self.device)
            cache[key] = per_tensor[self.part(kind).segment].to(dtype)
        return cache[key]


@dataclass(frozen=True)
class MatrixGroup:
    """Parameters with the same matrix view `m x n`: their indices, where each starts on the flat
    axis, and the slice they fill when they sit side by side (else None)."""

    m: int
    n: int
    params: tuple[int, ...]
    starts: tuple[int, ...]
    span: slice | None

    @property
    def count(self) -> int:
        return len(self.params)


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

    def row_mean(self, x: Tensor) -> Tensor:
        """`(*batch, N)` -> `(*batch, R)`: the mean of each row of each parameter."""
        return self._factor_mean(x, "row")

    def col_mean(self, x: Tensor) -> Tensor:
        """`(*batch, N)` -> `(*batch, C)`: the mean of each column of each parameter."""
        return self._factor_mean(x, "col")

    def _factor_mean(self, x: Tensor, kind: str) -> Tensor:
        lay = self.layout
        out = x.new_zeros(*x.shape[:-1], lay.part(kind).numel)
        return out.index_add_(-1, lay.index(kind, "tensor", False), x) / lay.factor_counts(kind, x.dtype)

    # Matrix ops (see the end of ops.py).

    def matrices(self, fn: Callable[..., Tensor], *xs: Tensor) -> Tensor:
        """`fn` over each parameter's matrix view of `xs` `(*batch, N)`, one call per shape group
        on a `(*batch * count, m, n)` batch of matrices; the results are written back in place of
        the parameters (`(*batch, N)`)."""
        if len({x.shape for x in xs}) > 1:
            xs = tuple(torch.broadcast_tensors(*xs))
        batch, numel = xs[0].shape[:-1], self.layout.numel
        groups = self.layout.matrix_groups
        if len(groups) == 1 and groups[0].count * groups[0].m * groups[0].n == numel:  # one shape: no copies
            g = groups[0]
            return fn(*(x.reshape(-1, g.m, g.n) for x in xs)).reshape(*batch, numel)
        if not groups:  # only empty parameters
            return torch.zeros_like(xs[0])
        pieces: dict[int, Tensor] = {}  # parameter -> its result, `(*batch, m * n)`
        for g in groups:
            if g.span is not None:  # side by side: a view, or one copy with batch axes
                parts = [x[..., g.span].reshape(-1, g.m, g.n) for x in xs]
            else:  # one stack per group
                parts = [torch.stack([x[..., s:s + g.m * g.n] for s in g.starts], dim=-2).reshape(-1, g.m, g.n)
                         for x in xs]
            result = fn(*parts).reshape(*batch, g.count, g.m * g.n)
            pieces.update((k, result[..., j, :]) for j, k in enumerate(g.params))
        return torch.cat([pieces[k] for k in sorted(pieces)], dim=-1)  # every result put back in one copy

    def matrix_rows(self) -> Tensor:
        """The row count of each element's parameter's matrix view, `(N,)` (`(1,)` for one parameter)."""
        return self._matrix_count(0)

    def matrix_cols(self) -> Tensor:
        """The column count of each element's parameter's matrix view, `(N,)` (`(1,)` for one parameter)."""
        return self._matrix_count(1)

    def _matrix_count(self, axis: int) -> Tensor:
        counts = self.layout.matrix_counts(axis, self._dtype)
        return counts[:1] if self.single else counts

    def over(self, kind: str) -> "FlatReducer":
        """The reducer for `kind` ("tensor", "row", "col") values, in this reducer's dtype."""
        if kind == "tensor":
            return self
        cache = self.__dict__.setdefault("_over", {})
        if kind not in cache:
            cache[kind] = FlatReducer(self.layout.part(kind))
        return cache[kind].for_dtype(self._dtype)


@dataclass(frozen=True)
class _Step:
    target: int                      # slot written
    fn: Callable[..., Tensor]
    args: tuple[int, ...]            # slots read (constants have slots too)
    reduces: bool
    over: str = "tensor"             # a reduction's axis: "tensor", "row" or "col"
    gathers: tuple[tuple[int, str, str, bool], ...] = ()  # (arg, from, onto, per-tensor scalar)


class StepFunction(ABC):
    """What the evaluators, `ProgramOptimizer` and the exporter run: a compiled program, or a
    transform around one (`SubspaceProgram`). One step over flat buffers, its zero state, and the
    state it keeps for given parameter shapes."""

    @abstractmethod
    def init_state(self, w: Tensor, layout: Layout | None = None) -> tuple[Tensor, ...]:
        """Zero state for the flat parameter buffer `w` `(*batch, N)` laid out by `layout`."""

    @abstractmethod
    def step_flat(self, w: Tensor, g: Tensor, lr: float | Tensor, step: int | float | Tensor,
                  state: Sequence[Tensor], reducer: FlatReducer) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One step: `(update, new_state)`; the caller applies `w - update`."""

    @abstractmethod
    def state_numel(self, shapes: Sequence[torch.Size]) -> int:
        """Optimizer-state numbers one copy keeps for parameters of `shapes`."""


class CompiledProgram(StepFunction):
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
        # The axis each value lives on: "tensor", "row", "col", or None (one value per copy).
        types = {**INPUT_TYPES, **dict(zip(program.state, a.state_types))}
        axis: dict = {p: (None if types[p] == "scalar" else types[p]) for p in params}
        for k, i in enumerate(live):
            s, op = program.body[i], OPS[program.body[i].op]
            args = tuple(slot[r] if r is not None else const_slot[repr(float(arg.value))]
                         for r, arg in zip(a.reads[i], s.args))
            slot[i] = base + k
            arg_types = [types[r] if isinstance(r, str) else a.types[r] if r is not None else "scalar"
                         for r in a.reads[i]]
            if op.kind == "elementwise":
                onto = a.types[i] if a.types[i] != "scalar" else next(
                    (axis[r] for r in a.reads[i] if r is not None and axis[r]), None)
            else:  # reductions run on the axis of their (joined) arguments; factor and matrix ops on tensors
                onto = "tensor" if op.kind in ("factor", "matrix") else join(arg_types)
            gathers = tuple((pos, axis[r], onto, t == "scalar") for pos, (r, t) in enumerate(zip(a.reads[i], arg_types))
                            if r is not None and axis[r] not in (None, onto))
            axis[i] = {"factor": op.result, "global": None}.get(op.kind, onto)
            reduces = op.kind != "elementwise"
            fn = _with_constants(op.impl, {pos + reduces: float(arg.value) for pos, (arg, t)
                                           in enumerate(zip(s.args, op.types())) if t == "const"})
            steps.append(_Step(base + k, fn, args, reduces, onto or "tensor", gathers))
        self._steps = steps
        self._consts = [c for _, c in consts]
        # Where each parameter slot is filled from: an input name, or an index into the state.
        self._param_sources = [p if p in INPUTS else self.state_names.index(p) for p in params]
        # A state whose new value cannot reach the update is not computed: it is carried unchanged.
        self._outputs = [slot[a.outputs[0]]] + [slot[o] if o in slot else slot[name]
                                                for o, name in zip(a.outputs[1:], program.state)]
        self._const_cache: dict[tuple, list[Tensor]] = {}

    def init_state(self, w: Tensor, layout: Layout | None = None) -> tuple[Tensor, ...]:
        """Zero state: shaped like the flat parameter buffer `w` `(*batch, N)` for a tensor state,
        `(*batch, R)` or `(*batch, C)` for a row or col state (those need the `layout`)."""
        out = []
        for name, kind in zip(self.state_names, self.analysis.state_types):
            if kind == "tensor":
                out.append(torch.zeros_like(w))
            elif layout is None:
                raise ValueError(f"state {name!r} of {self.program.name!r} is a {kind}: init_state needs the layout")
            else:
                out.append(w.new_zeros(*w.shape[:-1], layout.part(kind).numel))
        return tuple(out)

    def state_numel(self, shapes: Sequence[torch.Size]) -> int:
        """Optimizer-state numbers one copy keeps for parameters of `shapes`: per (m x n) parameter
        (`matrix_shape`) m*n for a tensor state, m for a row, n for a col. Live state only, as an
        exported optimizer keeps it (state that never reaches the update is not counted)."""
        kinds = dict(zip(self.state_names, self.analysis.state_types))
        total = 0
        for shape in shapes:
            m, n = matrix_shape(shape)
            size = {"tensor": math.prod(tuple(shape)), "row": m, "col": n}
            total += sum(size[kinds[s]] for s in self.analysis.live_state)
        return total

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
            for pos, src, dst, per_tensor in st.gathers:
                x = args[pos]
                if not (per_tensor and x.shape[-1] == 1):  # (a scalar of a single tensor broadcasts)
                    args[pos] = x.index_select(-1, reducer.layout.index(src, dst, per_tensor))
            slots[st.target] = st.fn(red.over(st.over), *args) if st.reduces else st.fn(*args)
        outs = [slots[o] for o in self._outputs]
        update = outs[0] if outs[0].shape == w.shape else outs[0].expand_as(w)
        new_state = tuple(v if v.shape == old.shape else v.expand_as(old).clone() for v, old in zip(outs[1:], state))
        return update, new_state


def _with_constants(impl: Callable[..., Tensor], constants: dict[int, float]) -> Callable[..., Tensor]:
    """`impl` with the arguments at the positions of `constants` replaced by those Python floats
    (arguments of type `const`: a matrix op's step count must be known without reading a tensor)."""
    if not constants:
        return impl
    return lambda *args: impl(*(constants.get(k, x) for k, x in enumerate(args)))


def compile_program(program: Program) -> CompiledProgram:
    """Check `program` and compile it (raises `ProgramError` if it is invalid)."""
    return CompiledProgram(program)


def as_step(program: Program | StepFunction) -> StepFunction:
    """`program` compiled, or returned as it is if it is already a step function (a compiled
    program, a transform around one); raises `ProgramError` if it is an invalid program."""
    if isinstance(program, StepFunction):
        return program
    if isinstance(program, Program):
        return compile_program(program)
    raise TypeError(f"expected a Program or a StepFunction, got {type(program).__name__}")


class ProgramOptimizer:
    """Run a compiled program over a list of parameters in place: `w <- w - update`.

    The parameters may carry `batch_dims` leading axes (many copies trained at once); `lr`
    may then be a tensor broadcastable against `(*batch, 1)`. State lives in flat buffers.
    """

    def __init__(self, program: Program | StepFunction, params: Sequence[Tensor], batch_dims: int = 0):
        self.compiled = as_step(program)
        self.params = list(params)
        self.batch_dims = batch_dims
        self.layout = Layout.of(self.params, batch_dims)
        self.reducer = FlatReducer(self.layout)
        self.state = self.compiled.init_state(self.layout.flatten(self.params, batch_dims), self.layout)
        self.steps = 0

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor], lr: float | Tensor) -> None:
        self.steps += 1
        w = self.layout.flatten(self.params, self.batch_dims)
        g = self.layout.flatten(grads, self.batch_dims)
        update, self.state = self.compiled.step_flat(w, g, lr, self.steps, self.state, self.reducer)
        for p, u in zip(self.params, self.layout.unflatten(update)):
            p.sub_(u)
