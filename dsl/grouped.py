"""Several step functions side by side over one flat buffer: how a role candidate steps a model.

`GroupedStep([(step_a, 3), (step_b, 5)])` treats the first 3 parameter tensors of the buffer as
one group stepped by `step_a` and the next 5 as a group stepped by `step_b`. Each group has its own
layout, reducer and state, so a per-tensor reduction sees its own tensor as before, and a global
one (`global_norm`) spans the parameters of its group: for each program, its group is the whole
model, as a torch param group is. Groups must be contiguous in the buffer (the caller orders the
parameters group by group, once), so a step slices the buffer and never gathers.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from optsearch.dsl.interpret import FlatReducer, Layout, StepFunction, as_step, compile_program
from optsearch.dsl.ir import Program, RoleProgram
from optsearch.dsl.roles import parameter_groups


class GroupedStep(StepFunction):
    """Step functions over consecutive groups of parameter tensors (see the module docstring).

    `groups` is a sequence of `(step function, number of parameter tensors)`; the state tuple is
    the groups' states one after another.
    """

    def __init__(self, groups: Sequence[tuple[StepFunction, int]]):
        if not groups or any(n < 1 for _, n in groups):
            raise ValueError(f"every group needs at least one parameter tensor, got counts {[n for _, n in groups]}")
        self.steps = tuple(s for s, _ in groups)
        self.counts = tuple(int(n) for _, n in groups)
        self._plans: dict[tuple, tuple[tuple[slice, ...], tuple[Layout, ...], tuple[FlatReducer, ...]]] = {}
        self._state_counts: tuple[int, ...] | None = None

    def __repr__(self) -> str:
        return f"GroupedStep({', '.join(f'{s!r} x{n}' for s, n in zip(self.steps, self.counts))})"

    def _plan(self, layout: Layout) -> tuple[tuple[slice, ...], tuple[Layout, ...], tuple[FlatReducer, ...]]:
        """Each group's slice of the flat axis, layout and reducer, made once per layout."""
        key = (tuple(layout.shapes), layout.device)
        if key not in self._plans:
            if len(layout.shapes) != sum(self.counts):
                raise ValueError(f"the groups hold {sum(self.counts)} parameter tensors, the layout {len(layout.shapes)}")
            slices, layouts, first, start = [], [], 0, 0
            for n in self.counts:
                part = Layout(layout.shapes[first:first + n], layout.device)
                slices.append(slice(start, start + part.numel))
                layouts.append(part)
                first, start = first + n, start + part.numel
            self._plans[key] = (tuple(slices), tuple(layouts), tuple(FlatReducer(p) for p in layouts))
        return self._plans[key]

    def init_state(self, w: Tensor, layout: Layout | None = None) -> tuple[Tensor, ...]:
        """The groups' zero states, one after another. Needs the layout."""
        if layout is None:
            raise ValueError("GroupedStep.init_state needs the parameters' layout")
        slices, layouts, _ = self._plan(layout)
        states = [s.init_state(w[..., sl], lay) for s, sl, lay in zip(self.steps, slices, layouts)]
        self._state_counts = tuple(len(s) for s in states)
        return tuple(x for s in states for x in s)

    def state_numel(self, shapes: Sequence[torch.Size]) -> int:
        """The groups' state for `shapes` (in buffer order, group by group)."""
        if len(shapes) != sum(self.counts):
            raise ValueError(f"the groups hold {sum(self.counts)} parameter tensors, got {len(shapes)} shapes")
        total, first = 0, 0
        for s, n in zip(self.steps, self.counts):
            total += s.state_numel(list(shapes[first:first + n]))
            first += n
        return total

    def step_flat(self, w: Tensor, g: Tensor, lr: float | Tensor, step: int | float | Tensor,
                  state: Sequence[Tensor], reducer: FlatReducer) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Each group's step on its slice of `w` and `g`; the updates side by side, the states in order."""
        slices, _, reducers = self._plan(reducer.layout)
        if self._state_counts is None:
            raise ValueError("GroupedStep.step_flat before init_state")
        updates, new_state, k = [], [], 0
        for s, sl, red, n in zip(self.steps, slices, reducers, self._state_counts):
            u, st = s.step_flat(w[..., sl], g[..., sl], lr, step, state[k:k + n], red)
            updates.append(u)
            new_state.extend(st)
            k += n
        return torch.cat(updates, dim=-1), tuple(new_state)


def compile_candidate(candidate: Program | RoleProgram | StepFunction,
                      roles: Sequence[str]) -> tuple[StepFunction, tuple[int, ...]]:
    """The step function for a model whose parameters have `roles` (in model order), and the order
    in which the parameters must sit in the flat buffer it steps (group by group).

    A plain program or a step function, and a role candidate whose roles on this model all name one
    program, are one group: that program compiled, parameters in model order, exactly as without
    roles. Otherwise a `GroupedStep`, one group per program. Raises `ProgramError` for an invalid
    program.
    """
    identity = tuple(range(len(roles)))
    if not isinstance(candidate, RoleProgram):
        return as_step(candidate), identity
    groups = parameter_groups(candidate, roles)
    if len(groups) == 1:
        return compile_program(groups[0].program), identity
    step = GroupedStep([(compile_program(g.program), len(g.indices)) for g in groups])
    return step, tuple(i for g in groups for i in g.indices)
