"""A run store held in memory: the `SearchStore` of tests and of searches nobody needs to resume.

It keeps what the SQLite store keeps, with the same transactions (a failed one leaves nothing
behind) and the same answers to the same queries, so the search behaves identically on either.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import replace
from typing import Any

from optsearch.dsl import OptsearchError
from optsearch.search.records import (
    Counters, Finished, NestedTransactions, ProgramOrder, ProgramQuery, ProgramRow, SearchState, order_key, selected,
)


class MemoryStore(NestedTransactions):
    """A `SearchStore` in plain Python containers."""

    def __init__(self, config: dict | None = None):
        self.config = config or {}
        self._programs: list[ProgramRow] = []
        self._evaluations: list[dict] = []
        self._population: list[tuple[int, int, float, int]] = []     # (birth, program id, fitness, island)
        self._history: dict[int, tuple[float, float]] = {}
        self._events: list[dict] = []
        self._state: SearchState | None = None
        self._finished: Finished | None = None

    _TABLES = ("_programs", "_evaluations", "_population", "_history", "_events", "_state", "_finished")

    # rows are replaced, never changed in place: shallow copies are a snapshot
    def _begin(self) -> dict[str, Any]:
        return {name: copy.copy(getattr(self, name)) for name in self._TABLES}

    def _commit(self, begun: dict[str, Any]) -> None:
        pass

    def _rollback(self, begun: dict[str, Any]) -> None:
        for name, value in begun.items():
            setattr(self, name, value)

    # --- programs and evaluations ------------------------------------------------------------

    def add_program(self, text: str, hash: str | None, fingerprint: str | None, parent: int | None,
                    mutation: str | None, status: str = "pending", fitness: float | None = None,
                    reuses: int | None = None, cache: str | None = None) -> int:
        pid = len(self._programs) + 1
        self._programs.append(ProgramRow(pid, text, hash, fingerprint, parent, mutation, status, _fit(_num(fitness)),
                                         reuses, cache, time.time(), None, None))
        return pid

    def finish_program(self, program_id: int, status: str, fitness: float, eval_index: int | None) -> None:
        row = self._programs[program_id - 1]
        self._programs[program_id - 1] = replace(row, status=status, fitness=_fit(_num(fitness)), finished=time.time(),
                                                 eval_index=eval_index)

    def set_funnel(self, program_id: int, status: str, fitness: float | None = None) -> None:
        row = self._programs[program_id - 1]
        self._programs[program_id - 1] = replace(row, funnel_status=status, funnel_fitness=_fit(_num(fitness)))

    def add_evaluation(self, program_id: int, score: Any, worker: str | None, purpose: str = "search") -> None:
        """Store one task score (`optsearch.evaluators.TaskScore`), as the SQLite store's row reads."""
        self._evaluations.append({
            "id": len(self._evaluations) + 1, "program_id": program_id, "purpose": purpose, "task": score.task,
            "size": score.size, "status": score.status, "metric": _num(score.metric), "fitness": _num(score.fitness),
            "reference": _num(score.reference), "seeds": list(score.seeds),
            "per_seed": [_num(x) for x in score.per_seed], "best_lr": list(score.best_lr),
            "metrics": [_num(x) for x in score.metrics], "steps": score.steps, "seconds": score.seconds,
            "state_per_param": getattr(score, "state_per_param", None), "error": score.error, "worker": worker,
            "finished": time.time()})

    def program(self, program_id: int) -> ProgramRow:
        if not 1 <= program_id <= len(self._programs):
            raise OptsearchError(f"no program with id {program_id} (ids run from 1 to {len(self._programs)})")
        return self._programs[program_id - 1]

    def programs(self, query: ProgramQuery = "all", order: ProgramOrder = "id") -> list[ProgramRow]:
        return sorted((r for r in self._programs if selected(r, query)), key=order_key(order))

    def count_programs(self) -> int:
        return len(self._programs)

    def state_per_param(self, program_id: int) -> float | None:
        """Mean optimizer state per parameter over the program's search evaluations (None: unknown)."""
        known = [e["state_per_param"] for e in self._evaluations
                 if e["program_id"] == program_id and e["purpose"] == "search" and e["state_per_param"] is not None]
        return sum(known) / len(known) if known else None

    def evaluations(self, program_id: int | None = None, purpose: str | None = None) -> list[dict]:
        return [e for e in self._evaluations if (program_id is None or e["program_id"] == program_id)
                and (purpose is None or e["purpose"] == purpose)]

    # --- population, history, events, state ---------------------------------------------------

    def population(self) -> list[tuple[int, int, float]]:
        """(birth, program id, fitness), oldest first."""
        return [m[:3] for m in self._population]

    def population_islands(self) -> dict[int, int]:
        """The island of each member not on island 0, by birth."""
        return {m[0]: m[3] for m in self._population if m[3]}

    def push_population(self, birth: int, program_id: int, fitness: float, size: int, island: int = 0) -> None:
        """Add a member to `island`; remove that island's oldest while it has more than `size` (ageing)."""
        self._population.append((birth, program_id, _fit(_num(fitness)), island))
        ours = [m for m in self._population if m[3] == island]
        for m in ours[:max(0, len(ours) - size)]:
            self._population.remove(m)

    def clear_population(self, island: int | None = None) -> None:
        """Remove every member (or those of `island`)."""
        self._population = [m for m in self._population if island is not None and m[3] != island]

    def add_history(self, eval_index: int, best: float, median: float | None) -> None:
        self._history[eval_index] = (_fit(_num(best)), _fit(_num(median)))

    def history(self) -> list[tuple[int, float, float]]:
        return [(i, *self._history[i]) for i in sorted(self._history)]

    def add_event(self, kind: str, detail: str, eval_index: int | None = None) -> None:
        self._events.append({"id": len(self._events) + 1, "eval_index": eval_index, "kind": kind, "detail": detail,
                             "at": time.time()})

    def events(self) -> list[dict]:
        return list(self._events)

    def search_state(self) -> SearchState | None:
        return copy.deepcopy(self._state)

    def save_search_state(self, state: SearchState) -> None:
        self._state = copy.deepcopy(state)

    def counters(self) -> Counters:
        """The search's counters as of the last commit (all zero before the first)."""
        return Counters() if self._state is None else copy.deepcopy(self._state.counters)

    def finished(self) -> Finished | None:
        return self._finished

    def set_finished(self, finished: Finished) -> None:
        self._finished = finished


def _num(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _fit(x: float | None) -> float:
    return x if x is not None else -math.inf


__all__ = ["MemoryStore"]
