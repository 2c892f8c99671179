"""The functions an exported role optimizer calls, copied into the generated module from their
source (`source`): which program steps each parameter of a param group, and the group as that
program's code sees it."""
from __future__ import annotations

import inspect

from torch import Tensor

from optsearch.dsl.roles import ROLES

_ROLES = tuple(ROLES)


def _check_role(param_group: dict) -> None:
    """A `ValueError` naming the role and the roles there are, for a group whose `"role"` is unknown."""
    role = param_group.get("role")
    if role is not None and role not in _ROLES:
        raise ValueError(f"unknown role {role!r} in a param group; roles: {', '.join(_ROLES)} (or no 'role': "
                         "2-D and larger parameters are 'hidden', the rest 'vector')")


def _role_of(p: Tensor, role: str | None) -> str:
    """The group's role, or without one the role `p`'s shape gives: 2-D and up `hidden`, else `vector`."""
    if role is not None:
        return role
    return "hidden" if p.ndim >= 2 else "vector"


def _split_by_program(group: dict, programs: dict, keys: dict) -> list[tuple[str, dict]]:
    """`(program, view)` for every program that steps a parameter of `group`, in `keys`' order.

    `programs` maps a role to the program that steps it; `keys` maps each program to its
    hyperparameters, `{name in its code: param-group key}`. A view is the group as the program's
    code reads it: its own parameters under `"params"`, its hyperparameters under their own names.
    """
    members: dict[str, list[Tensor]] = {name: [] for name in keys}
    for p in group["params"]:
        members[programs[_role_of(p, group["role"])]].append(p)
    views = []
    for name, params in members.items():
        if params:
            view = dict(group, params=params)
            view.update({own: group[key] for own, key in keys[name].items()})
            views.append((name, view))
    return views


def source() -> str:
    """The source of this module's functions and `_ROLES`, as a generated module holds them."""
    parts = [f"_ROLES = {_ROLES!r}"]
    parts += [inspect.getsource(f).rstrip() for f in (_check_role, _role_of, _split_by_program)]
    return "\n\n\n".join(parts)


__all__ = ["source"]
