"""What a run keeps, as typed values, and the interface every run store implements.

The search talks to its store only through `SearchStore`: the SQLite store of a real run
(`optsearch.search.store.RunStore`) and the in-memory one of tests and throwaway searches
(`optsearch.search.memory_store.MemoryStore`) both implement it, so the search core runs without
a disk. Queries are typed (`ProgramQuery`), never SQL fragments.
"""
from __future__ import annotations

import math
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Literal, Protocol

# "dropped": a cascade's stage 1 scored it too far below the best stage 1 for a full evaluation.
ProgramStatus = Literal["pending", "ok", "diverged", "invalid", "timeout", "error", "cached", "cancelled", "dropped"]
# Which programs a query returns: all, those still waiting for their evaluation, those with an
# evaluation index (finished search evaluations), those the funnel selected (any state), those it
# still has to re-check, those it re-checked, or the ranked ones (status ok with a finite fitness).
ProgramQuery = Literal["all", "pending", "cached", "evaluated", "funnel", "funnel_pending", "rechecked", "ranked"]
# The order of a query's rows: by id, by evaluation index, or best fitness first (ties by id).
ProgramOrder = Literal["id", "eval_index", "fitness"]


@dataclass
class ProgramRow:
    """One stored program and what is known of it."""

    id: int
    text: str
    hash: str | None
    fingerprint: str | None
    parent: int | None
    mutation: str | None
    status: ProgramStatus
    fitness: float              # -inf when failed or unknown
    reuses: int | None
    cache: str | None
    created: float
    finished: float | None
    eval_index: int | None
    funnel_status: str | None = None
    funnel_fitness: float | None = None


def selected(row: ProgramRow, query: ProgramQuery) -> bool:
    """Whether `row` belongs to the answer of `query` (the in-memory store's filter; the SQLite
    store answers the same queries in SQL)."""
    if query == "all":
        return True
    if query in ("pending", "cached"):
        return row.status == query
    if query == "evaluated":
        return row.eval_index is not None
    if query == "funnel":
        return row.funnel_status is not None
    if query == "funnel_pending":
        return row.funnel_status == "pending"
    if query == "rechecked":
        return row.funnel_status is not None and row.funnel_status != "pending"
    if query == "ranked":
        return row.status == "ok" and math.isfinite(row.fitness)
    raise ValueError(f"unknown program query {query!r}")


def order_key(order: ProgramOrder):
    """The sort key of an order (rows without an evaluation index sort first, as SQLite's NULLs do)."""
    if order == "id":
        return lambda r: r.id
    if order == "eval_index":
        return lambda r: (r.eval_index is not None, r.eval_index or 0, r.id)
    if order == "fitness":
        return lambda r: (-r.fitness, r.id)
    raise ValueError(f"unknown program order {order!r}")


@dataclass
class Counters:
    """What the search has done; saved with every commit."""

    children: int = 0            # children screened (rejected + cached + evaluated)
    rejected: int = 0            # refused by abstract execution or the fingerprint
    hash_hits: int = 0           # equivalent to a known program by canonical hash
    fingerprint_hits: int = 0    # ... by functional fingerprint
    inflight_duplicates: int = 0  # equivalent to a program still being evaluated (dropped)
    submitted: int = 0
    evaluations: int = 0         # finished evaluations
    births: int = 0              # population insertions (evaluated and cached children)
    restarts: int = 0
    best_id: int | None = None
    best_fitness: float = -math.inf
    last_improvement: int = 0    # evaluation index of the last improvement (by restart_min_gain) since a restart
    stall_mark: float | None = None  # the best fitness since the last restart, as of that improvement
    elapsed: float = 0.0         # seconds spent searching, over every session of the run
    sweep_of: int | None = None        # the program whose neighbourhood is being swept ...
    sweep_pos: int = 0                 # ... and how many of its neighbours were drawn
    swept: list = field(default_factory=list)  # programs whose neighbourhood was swept
    sweep_skipped: int = 0             # neighbours passed over: invalid or equivalent to a known program
    found_target: int | None = None   # program id that matched the target
    found_at: int | None = None       # ... after this many evaluations
    rejected_reasons: dict = field(default_factory=dict)
    # the evaluation cascade (evaluation.cascade)
    stage1_evaluations: int = 0        # first-stage evaluations finished (not in `evaluations`)
    stage1_best: float | None = None   # the bar: the stage-1 fitness of the run's best program ...
    stage1_best_of: int | None = None  # ... that program
    dropped: int = 0                   # programs stage 1 kept from a full evaluation
    drop_reuses: int = 0               # children equivalent to a dropped program (dropped with it)
    passed: list = field(default_factory=list)        # programs past stage 1 whose full evaluation is due
    # noise-aware promotion (search.promotion)
    promotion_evaluations: int = 0     # re-evaluations on new seeds finished
    promotions: int = 0                # challengers that became the run's best
    refused: int = 0                   # challengers whose lead was within the noise
    challengers: list = field(default_factory=list)   # programs whose re-evaluation is due
    best_mean: float | None = None     # the best's mean fitness over the promotion seeds ...
    best_se: float | None = None       # ... and its standard error
    # islands (`search.islands`; untouched with one population)
    next_island: int = 0               # the island of the next tournament child (round robin)
    awaiting: dict = field(default_factory=dict)      # program id (as text) -> its island, while in flight
    island_marks: list = field(default_factory=list)  # per island: [last improvement, stall mark], as above
    migrations: int = 0

    @property
    def cache_hits(self) -> int:
        return self.hash_hits + self.fingerprint_hits

    def to_json(self) -> dict:
        d = asdict(self)
        d["best_fitness"] = d["best_fitness"] if math.isfinite(d["best_fitness"]) else None
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Counters":
        d = dict(d)
        d["best_fitness"] = -math.inf if d.get("best_fitness") is None else d["best_fitness"]
        return cls(**d)


@dataclass
class SearchState:
    """The search's counters and its RNG state (`random.Random.getstate()`), committed together."""

    counters: Counters
    rng: tuple

    def to_json(self) -> dict:
        return {"rng": [self.rng[0], list(self.rng[1]), self.rng[2]], "counters": self.counters.to_json()}

    @classmethod
    def from_json(cls, d: dict) -> "SearchState":
        rng = d["rng"]
        return cls(Counters.from_json(d["counters"]), (rng[0], tuple(rng[1]), rng[2]))


@dataclass(frozen=True)
class Finished:
    """Why and when the last session of a run stopped."""

    reason: str
    evaluations: int


class NestedTransactions:
    """`transaction()` for a store: nested uses join the outermost one, which alone begins, and
    commits or (on any exception) rolls back, through the store's `_begin`, `_commit` and `_rollback`."""

    _depth = 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together or not at all (nested uses join the outer one)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        begun = self._begin()
        self._depth = 1
        try:
            yield
        except BaseException:
            self._rollback(begun)
            raise
        else:
            self._commit(begun)
        finally:
            self._depth = 0

    def _begin(self) -> Any:
        raise NotImplementedError

    def _commit(self, begun: Any) -> None:
        raise NotImplementedError

    def _rollback(self, begun: Any) -> None:
        raise NotImplementedError


class SearchStore(Protocol):
    """What the search reads and writes: programs, evaluations, the population, history, events
    and its own state. Every change made inside one `transaction()` commits together or not at all."""

    def transaction(self) -> AbstractContextManager[None]: ...

    def add_program(self, text: str, hash: str | None, fingerprint: str | None, parent: int | None,
                    mutation: str | None, status: str = "pending", fitness: float | None = None,
                    reuses: int | None = None, cache: str | None = None) -> int: ...

    def finish_program(self, program_id: int, status: str, fitness: float, eval_index: int | None) -> None: ...

    def set_funnel(self, program_id: int, status: str, fitness: float | None = None) -> None: ...

    def add_evaluation(self, program_id: int, score: Any, worker: str | None, purpose: str = "search") -> None: ...

    def program(self, program_id: int) -> ProgramRow: ...

    def programs(self, query: ProgramQuery = "all", order: ProgramOrder = "id") -> list[ProgramRow]: ...

    def count_programs(self) -> int: ...

    def state_per_param(self, program_id: int) -> float | None: ...

    def evaluations(self, program_id: int | None = None, purpose: str | None = None) -> list[Any]: ...

    def population(self) -> list[tuple[int, int, float]]: ...

    def population_islands(self) -> dict[int, int]: ...

    def push_population(self, birth: int, program_id: int, fitness: float, size: int, island: int = 0) -> None: ...

    def clear_population(self, island: int | None = None) -> None: ...

    def add_history(self, eval_index: int, best: float, median: float | None) -> None: ...

    def add_event(self, kind: str, detail: str, eval_index: int | None = None) -> None: ...

    def search_state(self) -> SearchState | None: ...

    def save_search_state(self, state: SearchState) -> None: ...

    def set_finished(self, finished: Finished) -> None: ...


__all__ = ["Counters", "Finished", "ProgramOrder", "ProgramQuery", "ProgramRow", "ProgramStatus", "SearchState",
           "SearchStore", "order_key", "selected"]
