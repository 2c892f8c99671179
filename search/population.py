"""The population policy of regularized evolution, pure and driven by one seeded RNG.

Who becomes a parent (tournament, or the best for a tuning child), who joins and who ages out,
when the population restarts, which neighbour of a stalled best a sweep tries next, and when
the search stops. It keeps no programs and touches no store, executor or clock: `Evolution`
feeds it ids and scores and writes down what it decided, and a test can drive it with numbers.
"""
from __future__ import annotations

import math
import random
import statistics
from typing import Callable, Sequence

from optsearch.search.records import Counters
from optsearch.search.settings import CONSTANT_MUTATIONS, SearchSettings

WARM_START_ID = 1      # the warm start is the run's first program
MAX_IDLE_CHILDREN = 20_000  # children in a row without a new evaluation: the neighbourhood is exhausted

Member = tuple[int, int, float]   # (birth, program id, selection score), oldest first in a population


class Population:
    """The members of a run's population and the decisions over them.

    `rng` draws every random choice of the search (mutations included, by the caller), so a run
    is a function of its seed; `counters` are the run's, updated as decisions are made.
    """

    def __init__(self, settings: SearchSettings, rng: random.Random, counters: Counters,
                 members: Sequence[Member] = ()):
        self.settings, self.rng, self.counters = settings, rng, counters
        self.members: list[Member] = list(members)

    def __len__(self) -> int:
        return len(self.members)

    # --- choosing parents ---------------------------------------------------------------------

    def tournament(self) -> int:
        """The best of `tournament` members drawn at random (the first of the best in draw order)."""
        k = min(self.settings.tournament, len(self.members))
        contenders = self.rng.sample(self.members, k)
        return max(contenders, key=lambda m: m[2])[1]

    def best(self) -> int:
        """The member with the best score (the oldest among equals)."""
        return max(self.members, key=lambda m: m[2])[1]

    def parent(self) -> tuple[int, dict[str, float], str]:
        """Who mutates, with which mutation weights and mutation tag: the winner of a tournament
        with every mutation, or (a `tune_share` of children) the population's best with constant
        moves only (a local search that homes in on constants a tournament winner's random edits
        rarely refine)."""
        s = self.settings
        if s.tune_share and self.rng.random() < s.tune_share:
            weights = {k: s.mutation_weights.get(k, 0.0) for k in CONSTANT_MUTATIONS}
            if sum(weights.values()) > 0:
                return self.best(), weights, "tune:"
        return self.tournament(), s.mutation_weights, ""

    # --- joining, ageing, restarts ------------------------------------------------------------------

    def join(self, program_id: int, fitness: float, score: float) -> int:
        """Add a member (the oldest leaves beyond `population`); returns its birth number. A new best
        fitness is recorded, and an improvement by more than `restart_min_gain` resets the stall clock."""
        c = self.counters
        c.births += 1
        self.members.append((c.births, program_id, score))
        del self.members[:max(0, len(self.members) - self.settings.population)]
        if fitness > c.best_fitness and self.settings.promotion is None:  # else the best is promoted
            c.best_id, c.best_fitness = program_id, fitness
        if c.stall_mark is None or fitness > c.stall_mark + self.settings.restart_min_gain:
            c.last_improvement, c.stall_mark = c.evaluations, fitness
            c.sweep_of = None        # progress: the next sweep, if any, is of a better program
        return c.births

    def challenges(self, fitness: float) -> bool:
        """Whether a finished program's fitness makes it a challenger for the run's best (promotion
        on): there is no best yet, or its fitness beats the best's mean over the promotion seeds."""
        c = self.counters
        return math.isfinite(fitness) and (c.best_mean is None or fitness > c.best_mean)

    def beats_best(self, mean: float, se: float) -> bool:
        """Whether a challenger's mean fitness over new seeds (standard error `se`) beats the best's
        by more than the noise: the standard error of the difference of the two means."""
        c = self.counters
        if not math.isfinite(mean):
            return False
        return c.best_mean is None or mean - c.best_mean > math.hypot(se, c.best_se or 0.0)

    def promote(self, program_id: int, fitness: float, mean: float, se: float) -> None:
        """Make a challenger the run's best (`search.promotion`): its search fitness, and its mean
        and standard error over the promotion seeds."""
        c = self.counters
        c.best_id, c.best_fitness, c.best_mean, c.best_se = program_id, fitness, mean, se
        c.promotions += 1

    def fill(self, program_id: int, fitness: float, score: float) -> list[int]:
        """A population of copies of one program (the warm start, or a restart's start)."""
        return [self.join(program_id, fitness, score) for _ in range(self.settings.population)]

    def restart_due(self) -> bool:
        c, after = self.counters, self.settings.restart_after
        return after is not None and c.best_id is not None and c.evaluations - c.last_improvement >= after

    def restart_from(self) -> int:
        """The program a restart starts from: the warm start (a fresh lineage) or the best so far."""
        return WARM_START_ID if self.settings.restart_from == "warm_start" else self.counters.best_id

    def restart(self, start: int, fitness: float, score: float) -> list[int]:
        """Empty the population and fill it with copies of `start`; returns the new births. The
        best so far stays the run's best."""
        c = self.counters
        c.restarts += 1
        c.last_improvement = c.evaluations
        self.members.clear()
        c.stall_mark = c.sweep_of = None
        return self.fill(start, fitness, score)

    # --- sweeps -------------------------------------------------------------------------------------

    def next_sweep(self, neighbours: Callable[[int], list]) -> tuple[int, object, str] | None:
        """The next untried single-edit neighbour of a stalled best (`sweep_after`) as
        `(parent id, child, mutation)`, or None. `neighbours(id)` lists a program's neighbours,
        `(child, edit name)`, in a fixed order."""
        c, after = self.counters, self.settings.sweep_after
        if c.sweep_of is None and after is not None and c.evaluations - c.last_improvement >= after:
            best = self.best()
            if best not in c.swept:
                c.swept.append(best)
                c.sweep_of, c.sweep_pos = best, 0
        if c.sweep_of is None:
            return None
        todo = neighbours(c.sweep_of)
        if c.sweep_pos >= len(todo):
            c.sweep_of = None
            return None
        child, name = todo[c.sweep_pos]
        c.sweep_pos += 1
        return c.sweep_of, child, "sweep:" + name

    # --- stopping -----------------------------------------------------------------------------------

    def stop_reason(self, inflight: int, elapsed: float, idle: int) -> str | None:
        """Why the search should stop now (None: go on), given the evaluations in flight, the
        seconds spent and the children in a row that brought no new evaluation."""
        s, c = self.settings, self.counters
        if c.found_target is not None:
            return "target"
        if s.stop_fitness is not None and c.best_fitness >= s.stop_fitness:
            return "stop_fitness"
        if s.evaluations is not None and c.evaluations + inflight >= s.evaluations:
            return "budget"
        if s.seconds is not None and elapsed >= s.seconds:
            return "seconds"
        if idle >= MAX_IDLE_CHILDREN:
            return "exhausted"
        return None

    def median_fitness(self) -> float | None:
        """The median finite score of the members (None if none is finite), for the history."""
        finite = [f for _, _, f in self.members if math.isfinite(f)]
        return statistics.median(finite) if finite else None


__all__ = ["MAX_IDLE_CHILDREN", "Member", "Population", "WARM_START_ID"]
