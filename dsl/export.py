"""Export a program as a standalone `torch.optim.Optimizer` module that needs only torch.

The module holds one class (param groups, `state_dict`, closure, `foreach`) and two functions
that apply the program to a param group, as torch's own optimizers are laid out: a plain path
(`_single_tensor_*`, one parameter at a time, one line per statement, easy to audit) and a fast
path (`_multi_tensor_*`, `torch._foreach_*` over all tensors, default on CPU and CUDA). Both
compute `w <- w - update` with the program's semantics; only live statements and live state
are emitted. `global_norm` spans all parameters of a param group.

`step` is kept per parameter as a float64 tensor (exact counts) and used in the parameter's
dtype, as the interpreter does, except in a bias correction with a named beta, which the fast
path computes in Python floats, as torch's Adam does.

This module assembles the parts, each written by its own module: names (`export_names`: the
program's constants become constructor arguments named by their role), the class
(`export_class`), the plain path (`export_plain`) and the fast path (`export_foreach`).
"""
from __future__ import annotations

import keyword
from pathlib import Path

from optsearch.dsl.analysis import check
from optsearch.dsl.errors import OptsearchError
from optsearch.dsl.export_class import DEFAULT_LR, class_source
from optsearch.dsl.export_codegen import Codegen, format_expr, strip_parens
from optsearch.dsl.export_foreach import write_multi_tensor
from optsearch.dsl.export_names import EPS_MAX, Constants, Hyperparameter, name_constants
from optsearch.dsl.export_plain import write_single_tensor
from optsearch.dsl.ir import Program

__all__ = ["DEFAULT_LR", "EPS_MAX", "Constants", "Hyperparameter", "check_class_name", "class_name_for",
           "export_parts", "export_program", "format_expr", "name_constants", "strip_parens", "write_export"]

_HELPERS = {  # text in the code paths -> the helper it calls, added to the module when called
    "_scalar(": '''def _scalar(x: float, like: Tensor | None = None) -> Tensor:
    """A number as a 0-d tensor in `like`'s dtype and device (float64 without `like`), for ops
    that need tensors and so that scalar math keeps IEEE semantics (1 / 0 is inf)."""
    if like is None:
        return torch.tensor(x, dtype=torch.float64)
    return torch.as_tensor(x, dtype=like.dtype, device=like.device)''',
    "_row_mean(": '''def _row_mean(x: Tensor) -> Tensor:
    """The mean of each row of `x` seen as a matrix (x.shape[0], rest), a vector being one row:
    a row value, shaped (x.shape[0], 1, ..., 1) (a vector's: (1,)) to broadcast against `x`."""
    if x.dim() == 0:
        return x.clone()
    return x.mean(dim=tuple(range(1, x.dim())) or 0, keepdim=True)''',
    "_col_mean(": '''def _col_mean(x: Tensor) -> Tensor:
    """The mean of each column of `x` seen as a matrix (x.shape[0], rest), a vector being one row:
    a col value, shaped (1, *x.shape[1:]) (a vector's: like it) to broadcast against `x`."""
    if x.dim() < 2:
        return x.clone()
    return x.mean(0, keepdim=True)''',
}

_FOREACH_DEFAULT = '''def _foreach_by_default(params: list[Tensor]) -> bool:
    """foreach=None means foreach when all tensors share one CPU or CUDA device and dtype."""
    first = params[0]
    return first.device.type in ("cpu", "cuda") and all(
        p.device == first.device and p.dtype == first.dtype for p in params)'''


def class_name_for(program: Program) -> str:
    """The default class name: `sgd_momentum` -> `SgdMomentum`."""
    return "".join(part[:1].upper() + part[1:] for part in program.name.split("_") if part) or "Exported"


def export_program(program: Program, class_name: str | None = None) -> str:
    """The source of a standalone module (torch only) with `program` as an Optimizer subclass.

    Raises `ProgramError` if the program is invalid, `OptsearchError` for a bad class name.
    """
    check(program)
    cls = check_class_name(class_name or class_name_for(program))
    source = "\n\n\n".join([_header(program, cls), *export_parts(program, cls)]) + "\n"
    compile(source, f"<export of {program.name}>", "exec")  # an internal error, if it fails
    return source


def check_class_name(cls: str) -> str:
    """`cls`, if it can name the class in a generated module; else an `OptsearchError`."""
    if not cls.isidentifier() or keyword.iskeyword(cls) or cls in ("torch", "Tensor", "Optimizer", "dist") \
            or cls.startswith("_"):
        raise OptsearchError(f"the class name must be a public Python identifier, got {cls!r}")
    return cls


def export_parts(program: Program, cls: str, extra_code: str = "") -> list[str]:
    """The module after its header: the class, the helpers its code (and `extra_code`) calls, the
    two code paths. Exporters that build on this one (`export_distributed`) add their own parts."""
    a = check(program)
    cg = Codegen.of(program, a, name_constants(program, a))
    single, multi = f"_single_tensor_{program.name}", f"_multi_tensor_{program.name}"
    functions = "\n".join(write_single_tensor(cg, single)) + "\n\n\n" + "\n".join(write_multi_tensor(cg, multi))
    parts = [class_source(cg, cls, single, multi), _FOREACH_DEFAULT]
    parts += [h for key, h in _HELPERS.items() if key in parts[0] + functions + extra_code]
    return parts + [functions]


def write_export(program: Program, path: str | Path, class_name: str | None = None) -> Path:
    """Write `export_program(program, class_name)` to `path` (folders created); returns the path."""
    path = Path(path)
    source = export_program(program, class_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return path


def _header(program: Program, cls: str) -> str:
    return f'''"""{cls}: the optsearch program `{program.name}` as a torch optimizer.

Generated by `optsearch export`. It needs torch and nothing else: copy it into any project.
The update rule, its hyperparameters and the program it came from are on the class.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = ["{cls}"]'''
