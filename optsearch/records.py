"""What the Python API hands back about a run, as typed records: the hall of fame, a lineage, the
fitness history. A list of them prints as a table and becomes a pandas DataFrame on request
(`to_frame()`; pandas is optional and only imported there).

The hall of fame is PySR's: the best program at each length (live statements, dead code not
counted) that beats every shorter one, a Pareto front of fitness against length; and the same
front against the optimizer state a program keeps per parameter (AdamW 2, Lion 1).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Generic, Literal, TypeVar

from optsearch.dsl import canonicalize, parse_program
from optsearch.report import fmt_fitness
from optsearch.search.records import ProgramRow
from optsearch.search.store import RunStore

Front = Literal["length", "state"]
R = TypeVar("R")


@dataclass(frozen=True)
class HallEntry:
    """One program on a hall-of-fame front."""

    id: int
    length: int                      # live statements (dead code is not counted)
    state_per_param: float | None    # optimizer-state numbers per model parameter
    fitness: float                   # search fitness (0 = tuned AdamW, higher is better)
    funnel_fitness: float | None     # on the funnel's larger and held-out tasks, where re-checked
    mutation: str | None
    winner: bool                     # the run's chosen program
    text: str


@dataclass(frozen=True)
class LineageStep:
    """A program on the way from the warm start to a descendant."""

    id: int
    parent: int | None
    mutation: str | None
    status: str
    fitness: float
    eval_index: int | None
    text: str


@dataclass(frozen=True)
class HistoryPoint:
    """The population's best and median fitness after an evaluation."""

    eval_index: int
    best: float
    median: float


class Records(list, Generic[R]):
    """A list of records (dataclasses) that prints as a table; `to_frame()` gives a DataFrame."""

    def to_frame(self):
        """The records as a pandas DataFrame, one column per field."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_frame() needs pandas (pip install pandas); the records themselves "
                              "are plain dataclasses") from None
        return pd.DataFrame([asdict(r) for r in self])

    def __str__(self) -> str:
        if not self:
            return "(none)"
        names = [f.name for f in fields(self[0]) if f.name != "text"]
        rows = [names] + [[_cell(n, getattr(r, n)) for n in names] for r in self]
        widths = [max(len(row[k]) for row in rows) for k in range(len(names))]
        return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)).rstrip() for row in rows)

    def __repr__(self) -> str:
        return str(self)


SIGNED = ("fitness", "funnel_fitness", "best", "median")   # fitness-like fields, printed as the CLI does


def _cell(name: str, v) -> str:
    if name in SIGNED:
        return fmt_fitness(v)
    return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def length(text: str) -> int:
    """A program's length: its live statements (what the canonical form keeps)."""
    return len(canonicalize(parse_program(text)).body)


def hall_of_fame(store: RunStore, by: Front = "length") -> Records[HallEntry]:
    """The Pareto front of `store`'s evaluated programs: fitness against length (`by="length"`) or
    against optimizer state per parameter (`by="state"`), smallest first; each row is the best
    program of its size that is fitter than every smaller one (ties go to the older program)."""
    if by not in ("length", "state"):
        raise ValueError(f"by must be 'length' or 'state', got {by!r}")
    winner = (store.get("winner") or {}).get("id")
    entries = []
    for row in store.programs("ranked", order="fitness"):   # best first, ties by id
        entries.append(_entry(store, row, winner))
    size = (lambda e: e.length) if by == "length" else (lambda e: e.state_per_param)
    best_of_size: dict = {}
    for e in entries:
        if size(e) is not None:
            best_of_size.setdefault(size(e), e)   # the first seen is the fittest
    front, best = Records(), -math.inf
    for key in sorted(best_of_size):
        e = best_of_size[key]
        if e.fitness > best:
            front.append(e)
            best = e.fitness
    return front


def _entry(store: RunStore, row: ProgramRow, winner: int | None) -> HallEntry:
    return HallEntry(row.id, length(row.text), store.state_per_param(row.id), row.fitness, row.funnel_fitness,
                     row.mutation, row.id == winner, row.text)


def lineage(store: RunStore, program_id: int) -> Records[LineageStep]:
    """`program_id` and its ancestors, warm start first."""
    return Records(LineageStep(r.id, r.parent, r.mutation, r.status, r.fitness, r.eval_index, r.text)
                   for r in reversed(store.lineage(program_id)))


def history(store: RunStore) -> Records[HistoryPoint]:
    """Best and median population fitness after each evaluation, in order."""
    return Records(HistoryPoint(i, best, median) for i, best, median in store.history())


__all__ = ["Front", "HallEntry", "HistoryPoint", "LineageStep", "Records", "hall_of_fame", "history", "length",
           "lineage"]
