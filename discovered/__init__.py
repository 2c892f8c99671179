"""Program files of known and discovered optimizers (the zoo), resolvable by name."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from optsearch.dsl import Program, load_program

ZOO_DIR = Path(str(resources.files(__package__) / "zoo"))


def zoo_names() -> list[str]:
    """Names of the zoo programs (`adamw`, `lion`, ...)."""
    return sorted(p.stem for p in ZOO_DIR.glob("*.py"))


def zoo_path(name: str) -> Path:
    return ZOO_DIR / f"{name}.py"


def load_zoo(name: str) -> Program:
    """The zoo program called `name`; `KeyError` if there is none."""
    if name not in zoo_names():
        raise KeyError(name)
    return load_program(zoo_path(name))


__all__ = ["ZOO_DIR", "load_zoo", "zoo_names", "zoo_path"]
