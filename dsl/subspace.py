"""Run any program in a low-rank subspace of each matrix parameter: GaLore and Online Subspace Descent.

A transform around a compiled program, not an op: `SubspaceProgram(compiled, Subspace(rank=r))`
is a step object (`init_state`, `step_flat`, `state_numel`) that the evaluators, `ProgramOptimizer`
and the exporter accept wherever they accept a program. For every 2-D parameter whose smaller side
`s` is larger than `r` it keeps a projection `P` (`r x s`, orthonormal rows, on the smaller side)
and each step

    g_low = C(g) @ P.T                   C(x) = x, or x.T when the rows are the smaller side
    u_low, state_low = program(w_low, g_low, state_low)      w_low = C(w) @ P.T
    update = C⁻¹(u_low @ P) * scale  (+ the w-only terms on the full parameter, below)

so the program's state is shaped like `g_low` (`big x r` instead of `big x s`). Other parameters
(vectors, small matrices) run the plain program on the same low-rank flat buffer, side by side.

How `P` moves (`projection`):
- `online` (Online Subspace Descent, Liang et al. 2024, arXiv 2408.12857): `P` takes one Adam
  step per iteration (learning rate `lr_p`) on `||G P^T P - G||^2` for the gradient normalised to
  unit Frobenius norm; the gradient of that loss is written out in closed form (`_pca_grad`), no
  SVD after the first step. `P` starts from the SVD of the first gradient (`init="svd"`), a seeded
  random orthonormal matrix (`"random"`) or the first rows of the identity (`"identity"`).
- `svd` (GaLore, Zhao et al. 2024): `P` = the top-r right singular vectors of `C(g)`, recomputed
  at steps 1, K + 1, 2K + 1, ... (`update_every=K`); the low-rank state is kept across refreshes.

Terms that use `w`. A program sees `w_low` (the parameter's coordinates in the subspace), which is
what a program that mixes `w` with its gradient statistics (coupled L2, a trust ratio `rms(w)`)
gets, projected like the gradient. When the update is *separable*, `h(g, state) + k(w)` (decoupled
weight decay in AdamW and Lion, any `k`, checked statically by `w_separable`), the w-only term acts
on the full parameter instead: the update becomes

    C⁻¹(u_low @ P) + k_full - C⁻¹(k_low @ P)      k_full = program(w, 0, zero state)
                                                  k_low  = program(w_low, 0, zero state)

which is exactly `C⁻¹(h_low @ P) + k(w)` when `h(0, 0) = 0` (true of every zoo program), and is
bit-identical to the plain program when `P` is the identity. A non-separable program runs wholly in
the subspace (its update is `C⁻¹(u_low @ P)`): the part of `w` outside the subspace gets no decay.

Matrix ops (`orthogonalize`, `gram_mul`, `rows`, `cols`) see what every other op sees: the projected
matrix, `big x r`. So `muon` here orthogonalizes the momentum of the low-rank gradient (r singular
values set near 1, mapped back by `P`: GaLore's projection with Muon's step), and its lr scaling
`max(1, rows / cols) ** 0.5` reads `big / r`. `rows(w)` and `cols(w)` read only a shape, so they
count as constants for separability: Muon's decoupled decay still acts on the full parameter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import torch
from torch import Tensor

from optsearch.dsl.errors import OptsearchError
from optsearch.dsl.interpret import CompiledProgram, FlatReducer, Layout, StepFunction, compile_program
from optsearch.dsl.ops import OPS

Projection = Literal["online", "svd"]
Init = Literal["svd", "random", "identity"]
PROJECTIONS: tuple[str, ...] = ("online", "svd")
INITS: tuple[str, ...] = ("svd", "random", "identity")

# Adam on P (the reference code's default optimizer for P), without weight decay.
P_BETAS = (0.9, 0.999)
P_EPS = 1e-8

@dataclass(frozen=True)
class Subspace:
    """Options of the low-rank transform; see the module docstring. Bad values raise `OptsearchError`.

    `update_every` is GaLore's K (steps between SVD refreshes, `svd` only); `lr_p` is the step size
    of the Adam step on P (`online` only); `scale` multiplies the projected-back update (GaLore's
    alpha); `seed` seeds `init="random"`; `include_full_rank` projects matrices whose smaller side
    equals the rank too (no memory saved: for checking that the transform is exact).
    """

    rank: int
    projection: Projection = "online"
    update_every: int = 200
    lr_p: float = 0.005
    init: Init = "svd"
    scale: float = 1.0
    seed: int = 0
    include_full_rank: bool = False

    def __post_init__(self):
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise OptsearchError(f"subspace rank must be an integer >= 1, got {self.rank!r}")
        if self.projection not in PROJECTIONS:
            raise OptsearchError(f"subspace projection must be one of {', '.join(PROJECTIONS)}, "
                                 f"got {self.projection!r}")
        if self.init not in INITS:
            raise OptsearchError(f"subspace init must be one of {', '.join(INITS)}, got {self.init!r}")
        if isinstance(self.update_every, bool) or not isinstance(self.update_every, int) or self.update_every < 1:
            raise OptsearchError(f"subspace update_every must be an integer >= 1, got {self.update_every!r}")
        if not (isinstance(self.lr_p, (int, float)) and math.isfinite(self.lr_p) and self.lr_p >= 0):
            raise OptsearchError(f"subspace lr_p must be a finite number >= 0, got {self.lr_p!r}")
        if not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale) and self.scale > 0):
            raise OptsearchError(f"subspace scale must be a finite number > 0, got {self.scale!r}")

    def projects(self, shape: Sequence[int]) -> bool:
        """Whether a parameter of this (per-copy) shape runs in the subspace."""
        if len(shape) != 2:
            return False
        side = min(shape)
        return side > self.rank or (self.include_full_rank and side == self.rank)

    def describe(self) -> str:
        """One line for tables and docstrings: `online rank 16, lr_p 0.005` / `svd rank 16, every 200`."""
        how = f"lr_p {self.lr_p:g}" if self.projection == "online" else f"every {self.update_every}"
        return f"{self.projection} rank {self.rank}, {how}"


def subspace_from_options(rank: int | None, projection: str = "online", update_every: int | None = None,
                          lr: float | None = None, init: str = "svd") -> Subspace | None:
    """The transform for config-like options (None where unset: defaults); None when `rank` is None or 0.

    This is what `--subspace-rank R --projection P --subspace-update-every K --subspace-lr X` and a
    search config's subspace keys map onto.
    """
    if rank is None or rank == 0:
        if update_every is not None or lr is not None:
            raise OptsearchError("subspace options need a subspace rank (--subspace-rank R, R >= 1)")
        return None
    kw: dict = {}
    if update_every is not None:
        kw["update_every"] = update_every
    if lr is not None:
        kw["lr_p"] = lr
    return Subspace(rank, projection, init=init, **kw)


def w_separable(compiled: CompiledProgram) -> bool:
    """Whether the program's update is a sum `h(g, state) + k(w)` and its state never depends on `w`.

    Abstract execution over the live statements: each value is tagged with what it depends on
    (`w`; `g` or the state; neither); a value mixing both is still a sum of the two while each op
    that builds it is affine (`Op.affine_in`) in its arguments that depend on either, the others
    held fixed (`+`, `-`, a scaling by a value depending on neither, `interp` with such a weight).
    A value read off a shape only (`Op.shape_only`: `rows(w)`) depends on neither.
    """
    program, a = compiled.program, compiled.analysis
    deps: dict = {"w": frozenset("w"), "g": frozenset("g"), "lr": frozenset(), "step": frozenset()}
    deps.update({s: frozenset("g") for s in program.state})
    split: dict = {k: True for k in deps}            # the value is h + k, each on one side only
    for i in sorted(a.live):
        reads = a.reads[i]
        ds = [deps[r] if r is not None else frozenset() for r in reads]
        deps[i] = frozenset() if OPS[program.body[i].op].shape_only else frozenset().union(*ds)
        if len(deps[i]) < 2:
            split[i] = True
            continue
        moving = [bool(d) for d in ds]
        split[i] = OPS[program.body[i].op].affine_in(moving) and all(split[r] for r in reads if r is not None)
    update, finals = a.outputs[0], a.outputs[1:]
    state_ok = all("w" not in deps[f] for f, s in zip(finals, program.state) if s in a.live_state)
    return split[update] and state_ok


def _reads_w(compiled: CompiledProgram) -> bool:
    a = compiled.analysis
    return any("w" in a.reads[i] for i in a.live) or a.outputs[0] == "w"


@dataclass
class _Plan:
    """How one model's parameters map onto the low-rank buffer; built once per layout."""

    layout: Layout
    low: Layout                      # per parameter: (big, r) if projected, else its own shape
    low_reducer: FlatReducer
    proj: Layout                     # per projected parameter: P, (r, small side)
    projected: list[int]             # indices of the projected parameters
    transposed: dict[int, bool] = field(default_factory=dict)   # rows are the smaller side


class SubspaceProgram(StepFunction):
    """A step function running `compiled` in a low-rank subspace of each matrix parameter.

    State tuple: the program's state over the low-rank buffer (one `(*batch, N_low)` tensor per
    state variable), then `P` for every projected parameter in one `(*batch, N_P)` tensor, then (for
    `online`) Adam's two moments for `P`, shaped like it.
    """

    def __init__(self, compiled: CompiledProgram, subspace: Subspace):
        self.compiled = compiled
        self.subspace = subspace
        self.program = compiled.program
        self.state_names = tuple(compiled.state_names)
        self.decay_on_full = _reads_w(compiled) and w_separable(compiled)
        self._plans: dict[tuple, _Plan] = {}

    def __repr__(self) -> str:
        return f"SubspaceProgram({self.program.name}, {self.subspace.describe()})"

    # -- the StepFunction interface -----------------------------------------------------------------

    def init_state(self, w_flat: Tensor, layout: Layout | None = None) -> tuple[Tensor, ...]:
        """Zero low-rank program state, `P` (random or identity now; from the first gradient for
        `init="svd"`) and, for `online`, zero Adam moments for `P`. Needs the layout."""
        if layout is None:
            raise ValueError("SubspaceProgram.init_state needs the parameters' layout")
        plan = self._plan(layout)
        batch = w_flat.shape[:-1]
        w_low = plan.low.flatten(self._to_low(plan, layout.unflatten(w_flat)), len(batch))
        state = self.compiled.init_state(w_low, plan.low)
        P = w_flat.new_zeros(*batch, plan.proj.numel)
        if self.subspace.init == "random":
            gen = torch.Generator().manual_seed(self.subspace.seed)
            parts = []
            for r, s in plan.proj.shapes:
                gauss = torch.randn(*batch, s, r, generator=gen, dtype=torch.float64)
                parts.append(torch.linalg.qr(gauss).Q.mT.to(w_flat))
            P = plan.proj.flatten(parts, len(batch)) if parts else P
        elif self.subspace.init == "identity":
            parts = [torch.eye(r, s, dtype=w_flat.dtype, device=w_flat.device).expand(*batch, r, s)
                     for r, s in plan.proj.shapes]
            P = plan.proj.flatten(parts, len(batch)) if parts else P
        extra = (torch.zeros_like(P), torch.zeros_like(P)) if self.subspace.projection == "online" else ()
        return (*state, P, *extra)

    def state_numel(self, shapes: Sequence[torch.Size]) -> int:
        """Optimizer-state elements for parameters of these shapes: the program's state over the
        low-rank shapes, plus `P` (and Adam's two moments for it under `online`)."""
        low, proj = self._low_shapes(shapes)
        n = self.compiled.state_numel(low)
        p = sum(r * s for r, s in proj)
        return n + p * (3 if self.subspace.projection == "online" else 1)

    def step_flat(self, w: Tensor, g: Tensor, lr: float | Tensor, step: int | float | Tensor,
                  state: Sequence[Tensor], reducer: FlatReducer) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One step on the flat `(*batch, N)` buffers (see the module docstring)."""
        sub = self.subspace
        plan = self._plan(reducer.layout)
        k = len(self.state_names)
        low_state, P = tuple(state[:k]), state[k]
        nb = w.ndim - 1
        t = int(step)
        ws, gs = plan.layout.unflatten(w), plan.layout.unflatten(g)
        Ps = plan.proj.unflatten(P)
        refresh = (sub.projection == "svd" and (t - 1) % sub.update_every == 0) or (
            sub.projection == "online" and sub.init == "svd" and t == 1)
        if refresh and plan.projected:
            Ps = [_top_right_singular(self._c(plan, i, gs[i]), P_i.shape[-2])
                  for i, P_i in zip(plan.projected, Ps)]
            P = plan.proj.flatten(Ps, nb)
        where = {i: j for j, i in enumerate(plan.projected)}
        w_low = plan.low.flatten(self._to_low(plan, ws, Ps), nb)
        g_low = plan.low.flatten(self._to_low(plan, gs, Ps), nb)
        u_low, new_low = self.compiled.step_flat(w_low, g_low, lr, step, low_state, plan.low_reducer)
        us = plan.low.unflatten(u_low)
        if self.decay_on_full and plan.projected:
            zero = tuple(torch.zeros_like(s) for s in low_state)
            k_low = plan.low.unflatten(self.compiled.step_flat(
                w_low, torch.zeros_like(g_low), lr, step, zero, plan.low_reducer)[0])
            full_zero = self.compiled.init_state(w, plan.layout)
            k_full = plan.layout.unflatten(self.compiled.step_flat(
                w, torch.zeros_like(g), lr, step, full_zero, reducer)[0])
        out = []
        for i, u in enumerate(us):
            if i not in where:
                out.append(u)
                continue
            P_i = Ps[where[i]]
            back = self._from_c(plan, i, (u @ P_i) * sub.scale)
            if self.decay_on_full:
                back = back + (k_full[i] - self._from_c(plan, i, (k_low[i] @ P_i) * sub.scale))
            out.append(back)
        update = plan.layout.flatten(out, nb)
        extra: tuple[Tensor, ...] = ()
        if sub.projection == "online":
            P, extra = self._online_step(plan, gs, Ps, state[k + 1], state[k + 2], t, nb)
        return update, (*new_low, P, *extra)

    # -- pieces -----------------------------------------------------------------------------------

    def _online_step(self, plan: _Plan, gs: list[Tensor], Ps: list[Tensor], m: Tensor, v: Tensor,
                     t: int, nb: int) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """One Adam step on every P against its online-PCA loss (Online Subspace Descent)."""
        P = plan.proj.flatten(Ps, nb)
        if not plan.projected:
            return P, (m, v)
        grad = plan.proj.flatten([_pca_grad(self._c(plan, i, gs[i]), P_i)
                                  for i, P_i in zip(plan.projected, Ps)], nb)
        b1, b2 = P_BETAS
        m = torch.lerp(m, grad, 1 - b1)
        v = torch.lerp(v, grad * grad, 1 - b2)
        step = (m / (1 - b1 ** t)) / (torch.sqrt(v / (1 - b2 ** t)) + P_EPS)
        return P - self.subspace.lr_p * step, (m, v)

    def _plan(self, layout: Layout) -> _Plan:
        key = (tuple(layout.shapes), str(layout.device))
        if key not in self._plans:
            projected = [i for i, s in enumerate(layout.shapes) if self.subspace.projects(s)]
            transposed = {i: layout.shapes[i][0] < layout.shapes[i][1] for i in projected}
            low, proj = self._low_shapes(layout.shapes)
            low_layout = Layout(low, layout.device)
            self._plans[key] = _Plan(layout, low_layout, FlatReducer(low_layout), Layout(proj, layout.device),
                                     projected, transposed)
        return self._plans[key]

    def _low_shapes(self, shapes: Sequence[torch.Size]) -> tuple[list[torch.Size], list[torch.Size]]:
        r = self.subspace.rank
        low, proj = [], []
        for s in shapes:
            s = torch.Size(s)
            if self.subspace.projects(s):
                low.append(torch.Size((max(s), r)))
                proj.append(torch.Size((r, min(s))))
            else:
                low.append(s)
        return low, proj

    @staticmethod
    def _c(plan: _Plan, i: int, x: Tensor) -> Tensor:
        """`x` with the smaller side last."""
        return x.mT if plan.transposed[i] else x

    _from_c = _c  # transposing is its own inverse

    def _to_low(self, plan: _Plan, xs: list[Tensor], Ps: list[Tensor] | None = None) -> list[Tensor]:
        """Each projected parameter's `C(x) @ P.T` (zeros when `Ps` is None: shapes only), others as is."""
        out, j = [], 0
        for i, x in enumerate(xs):
            if j < len(plan.projected) and plan.projected[j] == i:
                if Ps is None:
                    out.append(x.new_zeros(*x.shape[:-2], *plan.low.shapes[i]))
                else:
                    out.append(self._c(plan, i, x) @ Ps[j].mT)
                j += 1
            else:
                out.append(x)
        return out


def _top_right_singular(c: Tensor, r: int) -> Tensor:
    """The top-r right singular vectors of `c` (`(*batch, big, small)`), as `(*batch, r, small)` rows.

    Non-finite entries (a copy that has diverged) are zeroed first, so that one bad copy cannot
    stop the SVD of the others.
    """
    c = torch.nan_to_num(c, nan=0.0, posinf=0.0, neginf=0.0)
    return torch.linalg.svd(c, full_matrices=False).Vh[..., :r, :]


def _pca_grad(c: Tensor, P: Tensor) -> Tensor:
    """Gradient w.r.t. `P` of `||G P^T P - G||^2` for `G = c / ||c||` (Frobenius; 0 when `c` is 0).

    With `A = G P^T` and `R = A P - G`: `2 ((R P^T)^T G + A^T R)`.
    """
    norm = torch.linalg.matrix_norm(c, keepdim=True)
    G = c / norm.clamp_min(torch.finfo(c.dtype).tiny)
    A = G @ P.mT
    R = A @ P - G
    return 2 * ((R @ P.mT).mT @ G + A.mT @ R)


def subspace_program(program, subspace: Subspace) -> SubspaceProgram:
    """`program` (a `Program` or a `CompiledProgram`) wrapped in the subspace transform."""
    compiled = program if isinstance(program, CompiledProgram) else compile_program(program)
    return SubspaceProgram(compiled, subspace)
