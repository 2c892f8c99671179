"""The one assembler of every exported module: the class name, the module's header, the
program's plain optimizer (its class and its code paths) and what a transform adds.

A module is laid out as torch's own optimizers are: the class, then the functions that apply
the program to a param group, a plain path (`_single_tensor_*`, one parameter at a time, one
line per statement, easy to audit), a foreach path (`_multi_tensor_*`, `torch._foreach_*` over
all tensors) and, where the program allows, a fused path (`_fused_*`, the step of one parameter
compiled by torch.compile into one loop, no temporaries; the default on CPU). A transform
(`distributed`, `subspace`) adds a subclass whose `step` calls the plain and foreach paths, and the
runtime functions it needs.
"""
from __future__ import annotations

import keyword
from dataclasses import dataclass
from pathlib import Path

from optsearch.dsl.analysis import check
from optsearch.dsl.errors import OptsearchError
from optsearch.dsl.export import runtime
from optsearch.dsl.export.codegen import Codegen
from optsearch.dsl.export.foreach import write_multi_tensor
from optsearch.dsl.export.fused import FusedNames, fused_declines, write_fused
from optsearch.dsl.export.names import MODULE_IMPORTS, name_constants
from optsearch.dsl.export.optimizer_class import class_source
from optsearch.dsl.export.plain import write_single_tensor
from optsearch.dsl.ir import Program

def class_name_for(program: Program) -> str:
    """The default class name: `sgd_momentum` -> `SgdMomentum`."""
    return "".join(part[:1].upper() + part[1:] for part in program.name.split("_") if part) or "Exported"


def check_class_name(cls: str) -> str:
    """`cls`, if it can name the class in a generated module; else an `OptsearchError`."""
    if not cls.isidentifier() or keyword.iskeyword(cls) or cls in MODULE_IMPORTS or cls.startswith("_"):
        raise OptsearchError(f"the class name must be a public Python identifier, got {cls!r}")
    return cls


def header(doc: str, names: list[str], distributed: bool = False) -> str:
    """The module's docstring (`doc`, its first line the title), imports and `__all__`."""
    imports = ["import torch", *(["import torch.distributed as dist"] if distributed else []),
               "from torch import Tensor", "from torch.optim import Optimizer"]
    listed = ", ".join(f'"{name}"' for name in names)
    return "\n".join([f'"""{doc}\n"""', "from __future__ import annotations", "", *imports, "",
                      f"__all__ = [{listed}]"])


@dataclass(frozen=True)
class CodePaths:
    """The program's code paths: the names of the plain, the foreach and the fused functions (the
    fused one None where the program declines it: `declined` says why), and their source."""

    single: str
    multi: str
    source: str
    fused: FusedNames | None = None
    declined: str | None = None


def code_paths(cg: Codegen, prefix: str = "", fused: bool = False) -> CodePaths:
    """`_single_tensor{prefix}_NAME` and `_multi_tensor{prefix}_NAME`, written for `cg`'s program,
    and with `fused` the fused path `_fused{prefix}_NAME` where the program allows it."""
    single, multi = (f"_{kind}{prefix}_{cg.program.name}" for kind in ("single_tensor", "multi_tensor"))
    source = "\n".join(write_single_tensor(cg, single)) + "\n\n\n" + "\n".join(write_multi_tensor(cg, multi))
    declined = fused_declines(cg) if fused else None
    if not fused or declined:
        return CodePaths(single, multi, source, None, declined)
    names = FusedNames.of(f"{prefix.strip('_')}_{cg.program.name}" if prefix else cg.program.name)
    source += "\n\n\n" + "\n".join(write_fused(cg, names, multi))
    return CodePaths(single, multi, source, names)


@dataclass(frozen=True)
class PlainOptimizer:
    """The program's ordinary optimizer, as every export holds it: the class `name`, its code paths."""

    cg: Codegen
    name: str
    paths: CodePaths
    class_source: str


def plain_optimizer(program: Program, name: str) -> PlainOptimizer:
    """`program` as the class `name` with its code paths; `ProgramError` if the program is invalid."""
    a = check(program)
    cg = Codegen.of(program, a, name_constants(program, a))
    paths = code_paths(cg, fused=True)
    return PlainOptimizer(cg, name, paths, class_source(cg, name, paths.single, paths.multi, paths.fused,
                                                        paths.declined))


def assemble(head: str, plain: PlainOptimizer, *, runtime_parts: tuple[str, ...] = (),
             after: tuple[str, ...] = (), what: str = "export") -> str:
    """The module: `head`, the plain optimizer's class, the runtime functions its code calls, then
    `runtime_parts`, its code paths and `after` (a transform's subclass and functions). Compiled
    once: a generated module that does not compile is a bug, not a user's error."""
    code = "\n".join([plain.class_source, plain.paths.source, *after])
    helpers = runtime.op_helpers(code)
    fused = runtime.FUSED if plain.paths.fused else ()
    parts = [head, plain.class_source, runtime.source(["_foreach_by_default", *fused, *helpers]), *runtime_parts,
             plain.paths.source, *after]
    if plain.paths.fused:
        parts.append(f"{plain.name}.compiled_step = {plain.paths.fused.compiled}")
    source = "\n\n\n".join(parts) + "\n"
    compile(source, f"<{what} of {plain.cg.program.name}>", "exec")
    return source


def export_program(program: Program, class_name: str | None = None) -> str:
    """The source of a standalone module (torch only) with `program` as an Optimizer subclass.

    Raises `ProgramError` if the program is invalid, `OptsearchError` for a bad class name.
    """
    check(program)
    cls = check_class_name(class_name or class_name_for(program))
    doc = f"""{cls}: the optsearch program `{program.name}` as a torch optimizer.

Generated by `optsearch export`. It needs torch and nothing else: copy it into any project.
The update rule, its hyperparameters and the program it came from are on the class."""
    return assemble(header(doc, [cls]), plain_optimizer(program, cls))


def write_export(program: Program, path: str | Path, class_name: str | None = None) -> Path:
    """Write `export_program(program, class_name)` to `path` (folders created); returns the path."""
    path = Path(path)
    source = export_program(program, class_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return path
