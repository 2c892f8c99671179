"""optsearch: discover deep-learning optimizers by evolutionary program search.

The language (`parse_program`, `check`, `compile_program`, ...) and the Python API: `evolve`,
`resume` and `open_run` for searches, `program`, `optimizer`, `evaluate` and `zoo` for programs.

The names are loaded on first use, so that `import optsearch.dsl` (the language alone) does not
pull in the tasks, the evaluators and the search above it.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_HOME = {
    **dict.fromkeys(["Program", "ProgramError", "check", "compile_program", "load_program", "parse_program",
                     "print_program"], "optsearch.dsl"),
    **dict.fromkeys(["OptimizerProgram", "Run", "evaluate", "evolve", "open_run", "optimizer", "program", "resume",
                     "zoo"], "optsearch.api"),
}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name in _HOME:
        value = getattr(importlib.import_module(_HOME[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'optsearch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])
