"""The population policy of regularized evolution, pure and driven by one seeded RNG.

Who becomes a parent (tournament, or the best for a tuning child), who joins and who ages out,
when the population restarts, which neighbour of a stalled best a sweep tries next, and when
the search stops; with islands (`search.islands`), which island a child belongs to and who
migrates. It keeps no programs and touches no store, executor or clock: `Evolution`
feeds it ids and scores and writes down what it decided, and a test can drive it with numbers.
"""
from __future__ import annotations

import math
import random
import statistics
from typing import Callable, Mapping, Sequence

from optsearch.search.records import Counters
from optsearch.search.settings import CONSTANT_MUTATIONS, SearchSettings

WARM_START_ID = 1      # the warm start is the run's first program
MAX_IDLE_CHILDREN = 20_000  # children in a row without a new evaluation: the neighbourhood is exhausted

Member = tuple[int, int, float]   # (birth, program id, selection score), oldest first in a population


class Population:
    """The members of a run's population and the decisions over them.

    `rng` draws every random choice of the search (mutations included, by the caller), so a run
    is a function of its seed; `counters` are the run's, updated as decisions are made.

    With islands, `members` still holds every member oldest first and `island_of` maps a member's
    birth to its island (a birth it lacks is on island 0, as the store reads them); each island
    ages, holds tournaments and restarts on its own, and the run's best is global. With one island (`islands` null or count 1) `island_of` stays empty and
    every decision and random draw is the single population's.
    """

    def __init__(self, settings: SearchSettings, rng: random.Random, counters: Counters,
                 members: Sequence[Member] = (), island_of: Mapping[int, int] | None = None):
        self.settings, self.rng, self.counters = settings, rng, counters
        self.members: list[Member] = list(members)
        self.island_of: dict[int, int] = dict(island_of or {})
        self.count = settings.islands.count if settings.islands else 1
        self.island_size = settings.population // self.count

    def __len__(self) -> int:
        return len(self.members)

    # --- islands ------------------------------------------------------------------------------------

    def island(self, k: int) -> list[Member]:
        """The members of island `k`, oldest first."""
        if self.count == 1:
            return self.members
        return [m for m in self.members if self.island_of.get(m[0], 0) == k]

    def next_island(self) -> int:
        """The island of the next tournament child: round robin, so the islands grow alike."""
        if self.count == 1:
            return 0
        c = self.counters
        k, c.next_island = c.next_island, (c.next_island + 1) % self.count
        return k

    def home(self, program_id: int) -> int:
        """The island a child of `program_id` joins when no tournament chose it (a sweep's
        neighbour): the island of the youngest member that is `program_id`."""
        for birth, pid, _ in reversed(self.members):
            if pid == program_id:
                return self.island_of.get(birth, 0)
        return 0

    def expect(self, program_id: int, island: int) -> None:
        """A child was sent out for evaluation: it joins `island` when its result arrives (kept in the
        counters, so a resumed run sends it to the same island)."""
        if self.count > 1:
            self.counters.awaiting[str(program_id)] = island

    def arrived(self, program_id: int) -> int:
        """The island an evaluated child joins (the one `expect` was told)."""
        return self.counters.awaiting.pop(str(program_id), 0) if self.count > 1 else 0

    def migration_due(self) -> bool:
        i, c = self.settings.islands, self.counters
        return self.count > 1 and c.evaluations > 0 and c.evaluations % i.migrate_every == 0

    def migrate(self) -> list[tuple[int, int, float, int]]:
        """Around the ring, the `migrants` best of each island (as it was before anyone moved) are
        copied into the next island, where the oldest leave; a program already on that island is
        not copied twice. Returns `(from island, program id, score, birth)` per migrant."""
        self.counters.migrations += 1
        moving = []
        for k in range(self.count):
            best = sorted(self.island(k), key=lambda m: -m[2])[:self.settings.islands.migrants]
            moving += [(k, pid, score) for _, pid, score in best]
        out = []
        for k, pid, score in moving:
            to = (k + 1) % self.count
            if all(m[1] != pid for m in self.island(to)):
                out.append((k, pid, score, self._add(pid, score, to)))
        return out

    def _add(self, program_id: int, score: float, island: int) -> int:
        """A new member of `island`; the oldest of that island leave beyond its size."""
        c = self.counters
        c.births += 1
        self.members.append((c.births, program_id, score))
        if self.count == 1:
            del self.members[:max(0, len(self.members) - self.settings.population)]
            return c.births
        self.island_of[c.births] = island
        ours = self.island(island)
        for m in ours[:max(0, len(ours) - self.island_size)]:
            self.members.remove(m)
            self.island_of.pop(m[0], None)
        return c.births

    # --- choosing parents ---------------------------------------------------------------------

    def tournament(self, island: int = 0) -> int:
        """The best of `tournament` members of `island` drawn at random (the first of the best in draw order)."""
        members = self.island(island)
        contenders = self.rng.sample(members, min(self.settings.tournament, len(members)))
        return max(contenders, key=lambda m: m[2])[1]

    def best(self, island: int | None = None) -> int:
        """The member with the best score (the oldest among equals), of `island` or of all."""
        return max(self.members if island is None else self.island(island), key=lambda m: m[2])[1]

    def parent(self, island: int = 0) -> tuple[int, dict[str, float], str]:
        """Who mutates, with which mutation weights and mutation tag: the winner of a tournament
        with every mutation, or (a `tune_share` of children) the population's best with constant
        moves only (a local search that homes in on constants a tournament winner's random edits
        rarely refine); with islands, both within `island`."""
        s = self.settings
        if s.tune_share and self.rng.random() < s.tune_share:
            weights = {k: s.mutation_weights.get(k, 0.0) for k in CONSTANT_MUTATIONS}
            if sum(weights.values()) > 0:
                return self.best(island), weights, "tune:"
        return self.tournament(island), s.mutation_weights, ""

    # --- joining, ageing, restarts ------------------------------------------------------------------

    def join(self, program_id: int, fitness: float, score: float, island: int = 0) -> int:
        """Add a member to `island` (its oldest leaves beyond the island's size); returns its birth
        number. A new best fitness is recorded, and an improvement by more than `restart_min_gain`
        resets the stall clock (the island's too)."""
        c = self.counters
        birth = self._add(program_id, score, island)
        if self.count > 1:
            mark = self._marks()[island]
            if mark[1] is None or fitness > mark[1] + self.settings.restart_min_gain:
                mark[:] = [c.evaluations, fitness]
        if fitness > c.best_fitness and self.settings.promotion is None:  # else the best is promoted
            c.best_id, c.best_fitness = program_id, fitness
        if c.stall_mark is None or fitness > c.stall_mark + self.settings.restart_min_gain:
            c.last_improvement, c.stall_mark = c.evaluations, fitness
            c.sweep_of = None        # progress: the next sweep, if any, is of a better program
        return birth

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

    def fill(self, program_id: int, fitness: float, score: float, island: int | None = None) -> list[int]:
        """A population (or one island) of copies of one program (the warm start, or a restart's start)."""
        islands = range(self.count) if island is None else [island]
        return [self.join(program_id, fitness, score, k) for k in islands for _ in range(self.island_size)]

    def _marks(self) -> list[list]:
        """Each island's stall clock: [evaluation of its last improvement, its best since a restart]."""
        marks = self.counters.island_marks
        if not marks:
            marks.extend([0, None] for _ in range(self.count))
        return marks

    def stalled_island(self) -> int | None:
        """The first island whose best has not improved for `restart_after` evaluations (None: none)."""
        c, after = self.counters, self.settings.restart_after
        if after is None or c.best_id is None:
            return None
        return next((k for k, (last, _) in enumerate(self._marks()) if c.evaluations - last >= after), None)

    def restart_due(self) -> bool:
        c, after = self.counters, self.settings.restart_after
        if self.count > 1:
            return self.stalled_island() is not None
        return after is not None and c.best_id is not None and c.evaluations - c.last_improvement >= after

    def restart_from(self) -> int:
        """The program a restart starts from: the warm start (a fresh lineage) or the best so far."""
        return WARM_START_ID if self.settings.restart_from == "warm_start" else self.counters.best_id

    def restart(self, start: int, fitness: float, score: float) -> list[int]:
        """Empty the population (with islands: the first stalled island) and fill it with copies of
        `start`; returns the new births. The best so far stays the run's best."""
        c = self.counters
        c.restarts += 1
        if self.count > 1:
            k = self.stalled_island()
            self._marks()[k] = [c.evaluations, None]
            gone = {b for b, _, _ in self.island(k)}
            self.members = [m for m in self.members if m[0] not in gone]
            for b in gone:
                self.island_of.pop(b, None)
            return self.fill(start, fitness, score, k)
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
