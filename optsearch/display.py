"""How the CLI and the reports show things: tables, indented blocks, numbers, and non-finite values
(inf and NaN become None in JSON, `-`/`inf` in text). One place, so every command formats alike."""
from __future__ import annotations

import math
from typing import Iterable

from optsearch.evaluators.evaluate import json_safe


def finite(x: float | None) -> float | None:
    """`x`, or None where it is None, inf or NaN (JSON has no inf)."""
    return x if x is not None and math.isfinite(x) else None


def fmt_fitness(x: float | None) -> str:
    """A fitness as `+0.0123`; `-` for a missing or non-finite one."""
    return "-" if x is None or not math.isfinite(x) else f"{x:+.4f}"


def num(x: float | None, fmt: str = ".4f") -> str:
    """A number in `fmt`; `-` for None, `inf`/`-inf`/`nan` spelled out."""
    if x is None:
        return "-"
    if math.isnan(x):
        return "nan"
    return format(x, fmt) if math.isfinite(x) else ("-inf" if x < 0 else "inf")


def table(rows: list[tuple[str, ...]]) -> str:
    """Rows as left-aligned columns, two spaces apart; the last column is not padded."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join([c.ljust(w) for c, w in zip(r, widths)] + [r[-1]]) for r in rows)


def indent(text: str | Iterable[str], prefix: str = "    ") -> str:
    """A text (or its lines) indented by `prefix`, without a trailing newline."""
    lines = text.rstrip("\n").splitlines() if isinstance(text, str) else list(text)
    return "\n".join(prefix + line for line in lines)


__all__ = ["finite", "fmt_fitness", "indent", "json_safe", "num", "table"]
