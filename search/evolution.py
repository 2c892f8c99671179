"""Regularized evolution over programs: steady state, asynchronous, durable.

The population starts as copies of a warm-start program (AdamW by default). A child is made by
picking the best of `tournament` random members and mutating it; the child is screened before
anyone trains it (`optsearch.search.equivalence`): invalid children are counted and dropped,
children equivalent to a known program reuse its fitness, and only new behaviour is sent to the
executor. As many children are in flight as the executor has workers; each result joins the
population as it arrives and the oldest member leaves (ageing). When the best fitness has not
improved for `restart_after` evaluations, the population restarts from copies of the best. With
islands (`search.islands`) each island does all this on its own, children go to the islands in
turn, and every `migrate_every` evaluations the best of each island are copied into the next.

Two options spend evaluations where they matter. The cascade (`evaluation.cascade`) trains each new
program on a fraction of the budget first, and only those whose first stage is near the first stage
of the run's best program train the full budget; the others are stored as `dropped` and never join
the population. Promotion (`search.promotion`) re-evaluates a would-be best on new seeds and makes
it the run's best (the start of restarts, a funnel entry) only if its mean beats the best's by more
than the noise.

The decisions over the population are `optsearch.search.population.Population`'s (pure, driven
by the run's RNG); this module makes and screens children, talks to the executor and writes
everything down in the store (`optsearch.search.records.SearchStore`). Everything the search
decides is written in the same transaction as the search's RNG state and counters, so a run
killed at any moment resumes where its last commit left it: children that were in flight are
sent again, and with the inline executor the run continues exactly as if it had never stopped
(the random draws after the last commit are replayed identically).
"""
from __future__ import annotations

import math
import random
import statistics
import time
from dataclasses import dataclass, replace
from typing import Callable, Mapping

from optsearch.dsl import Program, canonicalize, check, parse_program, print_candidate, print_program
from optsearch.dsl.roles import with_fixed_roles
from optsearch.evaluators import EvalJob, Executor, JobResult
from optsearch.evaluators.evaluate import seed_fitnesses
from optsearch.evaluators.fitness import aggregate, memory_penalized
from optsearch.search.equivalence import EquivalenceCache, Screen, matches, screen, screen_child
from optsearch.search.mutate import mutate, neighbours
from optsearch.search.population import MAX_IDLE_CHILDREN, WARM_START_ID, Population
from optsearch.search.records import Counters, Finished, SearchState, SearchStore
from optsearch.search.settings import SearchSettings

MAX_CHAIN = 8          # mutations applied to one child at most while it stays equivalent to its parent


@dataclass
class Outcome:
    """How a call to `Evolution.run` ended."""

    reason: str                  # budget | seconds | stop_fitness | target | exhausted
    counters: Counters
    best_id: int | None
    best_fitness: float


Progress = Callable[["Evolution"], None]


class Evolution:
    """One run of regularized evolution on `store`, evaluating through `executor`.

    `warm_start` and `target` are resolved programs (the settings name them); `progress` is
    called after every finished evaluation and about every second while waiting. With
    `settings.roles`, `fixed` holds the resolved fixed programs by role: the population's programs
    step the evolved roles, and each evaluation trains the candidate they make with the fixed ones.
    """

    def __init__(self, settings: SearchSettings, store: SearchStore, executor: Executor, warm_start: Program,
                 target: Program | None = None, progress: Progress | None = None,
                 fixed: Mapping[str, Program] | None = None):
        if (settings.roles is None) != (fixed is None):
            raise ValueError("the fixed programs go with settings.roles: give both or neither")
        self.settings, self.store, self.executor, self.fixed = settings, store, executor, fixed
        self.warm_start, self.target, self.progress = warm_start, target, progress
        self.population = Population(settings, random.Random(settings.seed), Counters())
        self.cache = EquivalenceCache()
        self.inflight: dict[int, int] = {}                    # job id -> program id (search evaluations)
        self.funnel_inflight: dict[int, int] = {}             # job id -> program id (funnel re-checks)
        self.stage1_inflight: dict[int, int] = {}             # job id -> program id (a cascade's first stage)
        self.promotion_inflight: dict[int, int] = {}          # job id -> program id (promotion re-checks)
        self._dropped: set[int] = set()                       # programs the cascade's first stage dropped
        self._funneled: list[tuple[float, int]] = []          # (search fitness less memory, id) re-checked
        self._programs: dict[int, Program] = {}               # parsed once, on first use
        self._live: dict[int, int] = {}                       # live statements, analysed once
        self._hash_of: dict[int, str | None] = {}
        self._fitness: dict[int, float] = {}
        self._memory: dict[int, float | None] = {}
        self._session_start = time.monotonic()
        self._elapsed_base = 0.0
        self._idle = 0
        self._neighbours: dict[int, list] = {}                # the swept program's neighbours, made once
        self._load()

    @property
    def counters(self) -> Counters:
        return self.population.counters

    @property
    def rng(self) -> random.Random:
        return self.population.rng

    # --- state in and out of the store ------------------------------------------------------------

    def _load(self) -> None:
        state = self.store.search_state()
        if state is not None:
            self.rng.setstate(state.rng)
            self.population.counters = state.counters
            self._elapsed_base = state.counters.elapsed
        self.population.members = self.store.population()
        self.population.island_of = self.store.population_islands()
        for row in self.store.programs():
            if row.status == "cancelled":
                continue
            self._hash_of[row.id] = row.hash
            if row.status == "cached":
                continue
            if row.status == "dropped":
                self._dropped.add(row.id)
            self.cache.add(row.id, row.hash, row.fingerprint)
            if row.status != "pending":
                self._fitness[row.id] = row.fitness
                self._memory[row.id] = self.store.state_per_param(row.id)
            if row.funnel_status is not None and row.funnel_status != "cancelled":
                admitted = memory_penalized(row.fitness, self._memory.get(row.id), self.settings.memory_penalty)
                self._funneled.append((admitted, row.id))

    def _save_state(self) -> None:
        self.counters.elapsed = self.elapsed
        self.store.save_search_state(SearchState(self.counters, self.rng.getstate()))

    @property
    def elapsed(self) -> float:
        return self._elapsed_base + time.monotonic() - self._session_start

    def program(self, program_id: int) -> Program:
        if program_id not in self._programs:
            self._programs[program_id] = parse_program(self.store.program(program_id).text)
        return self._programs[program_id]

    def _live_statements(self, program_id: int) -> int:
        if program_id not in self._live:
            self._live[program_id] = len(check(self.program(program_id)).live)
        return self._live[program_id]

    # --- the loop -----------------------------------------------------------------------------------

    def run(self) -> Outcome:
        """Search until the budget or a stop condition is reached; returns why it stopped.

        Safe to call on a store that was interrupted: in-flight children are sent again.
        """
        self._session_start = time.monotonic()
        if self.store.count_programs() == 0:
            self._start()
        for row in self.store.programs("pending"):
            self._submit(row.id)
        for row in self.store.programs("funnel_pending"):
            self._submit_funnel(row.id)
        for pid in self.counters.challengers:
            self._submit_promotion(pid)
        reason = self._stop_reason()
        last_report = 0.0
        while reason is None or (reason in ("budget", "seconds", "exhausted") and self.executor.pending()):
            if reason is None:
                self._fill()
            if self.executor.pending() == 0:
                reason = self._stop_reason() or ("exhausted" if self._idle >= MAX_IDLE_CHILDREN else None)
                if reason is None and not self.population:
                    raise RuntimeError("no population and nothing in flight")  # cannot happen: a bug
                continue
            result = self.executor.next_result(timeout=1.0)
            if result is not None and result.job_id in self.funnel_inflight:
                self._record_funnel(result)
            elif result is not None and result.job_id in self.stage1_inflight:
                self._record_stage1(result)
            elif result is not None and result.job_id in self.promotion_inflight:
                self._record_promotion(result)
            elif result is not None:
                self._record(result)
            if self.progress and (result is not None or time.monotonic() - last_report > 1.0):
                last_report = time.monotonic()
                self.progress(self)
            reason = self._stop_reason()
        if reason in ("target", "stop_fitness"):
            self._cancel_inflight()
        with self.store.transaction():
            self._save_state()
            self.store.set_finished(Finished(reason, self.counters.evaluations))
        best = self.counters.best_id
        return Outcome(reason, self.counters, best, self.counters.best_fitness)

    def _stop_reason(self) -> str | None:
        return self.population.stop_reason(len(self.inflight), self.elapsed, self._idle)

    def _start(self) -> None:
        """Store the warm start and send it for evaluation; the population fills when it returns."""
        s = screen(self.warm_start)
        with self.store.transaction():
            pid = self.store.add_program(print_program(self.warm_start), s.hash, s.fingerprint, None, "warm start")
            self.cache.add(pid, s.hash, s.fingerprint)
            self._hash_of[pid] = s.hash
            self._save_state()

    def _fill(self) -> None:
        while (self.population and self.executor.pending() < max(1, self.executor.workers)
               and self._stop_reason() is None):
            self._spawn()

    def _sweep_neighbours(self, program_id: int) -> list:
        if program_id not in self._neighbours:
            self._neighbours = {program_id: neighbours(self.program(program_id), self.settings.ops)}
        return self._neighbours[program_id]

    def _worth_sweeping(self, child: Program, s: Screen) -> bool:
        hit = self.cache.lookup(s.hash, s.fingerprint)
        if hit is None:
            return True
        source, kind = hit
        return kind == "fingerprint" and len(check(child).live) < self._live_statements(source)

    def _spawn(self) -> None:
        """Make one child: screen it, reuse an equivalent program's fitness, or send it out."""
        c = self.counters
        swept = self.population.next_sweep(self._sweep_neighbours)
        if swept is not None:
            # A neighbour is tried only if it is new behaviour or a shorter form of known behaviour
            # (a no-op `minimum` dropped): invalid ones and other known programs are passed over
            # without a trace (a sweep must not flood the population or the store with known
            # programs, nor count as the search's children).
            parent_id, child, mutation = swept
            child, s = screen_child(child, self.settings.max_statements, self.settings.simplify_children)
            if not s.ok or not self._worth_sweeping(child, s):
                c.sweep_skipped += 1
                return
            island = self.population.home(parent_id)
        else:
            island = self.population.next_island()
            drawn = self._mutated_child(island)
            if drawn is None:
                return
            parent_id, child, s, mutation = drawn
        c.children += 1
        canonical = canonicalize(child)
        text = print_program(replace(canonical, name="candidate"))
        hit = self.cache.lookup(s.hash, s.fingerprint)
        if hit is not None and hit[0] not in self._fitness:
            c.inflight_duplicates += 1          # its twin is still being evaluated
            self._idle += 1
            return
        with self.store.transaction():
            if hit is not None and hit[0] in self._dropped:
                self._reuse_drop(text, s, parent_id, mutation, hit)
            elif hit is not None:
                source, kind = hit
                fitness = self._fitness[source]
                if kind == "hash":
                    c.hash_hits += 1
                else:
                    c.fingerprint_hits += 1
                pid = self.store.add_program(text, s.hash, s.fingerprint, parent_id, mutation, "cached",
                                             fitness, source, kind)
                self._hash_of[pid] = s.hash
                self._live[pid] = len(check(canonical).live)
                self._join(pid, fitness, self._score(pid, fitness, self._memory.get(source)), island)
                self._idle += 1
                if self.target is not None and self._match(canonical):
                    c.found_target, c.found_at = pid, c.evaluations
            else:
                pid = self.store.add_program(text, s.hash, s.fingerprint, parent_id, mutation)
                self.cache.add(pid, s.hash, s.fingerprint)
                self._hash_of[pid] = s.hash
                self.population.expect(pid, island)
                self._idle = 0
            self._save_state()
        if hit is None:
            self._submit(pid, text)

    def _mutated_child(self, island: int = 0) -> tuple[int, Program, Screen, str] | None:
        """A child of a tournament winner of `island` (or a tuning child of its best), mutated until
        its behaviour differs from its parent's; None if it was rejected or never differed."""
        parent_id, weights, tag = self.population.parent(island)
        parent_hash = self._hash_of.get(parent_id)
        child, names = self.program(parent_id), []
        for _ in range(MAX_CHAIN):
            drawn = mutate(child, self.rng, weights, self.settings.ops)
            if drawn is None:
                continue
            child, name = drawn
            names.append(name)
            child, s = screen_child(child, self.settings.max_statements, self.settings.simplify_children)
            if not s.ok:
                self._reject(s)
                return None
            if s.hash != parent_hash:
                return parent_id, child, s, tag + "+".join(names)
        self._idle += 1
        return None

    def _reject(self, s: Screen) -> None:
        """A child rejected statically: counted, with its reason; it costs no evaluation."""
        c = self.counters
        self._idle += 1
        c.children += 1
        c.rejected += 1
        key = s.reason.split(":")[0]
        c.rejected_reasons[key] = c.rejected_reasons.get(key, 0) + 1

    def _submit(self, program_id: int, text: str | None = None) -> None:
        """Send a program for its full evaluation, or first for the cascade's first stage."""
        if self.settings.evaluation.cascade is not None and program_id not in self.counters.passed:
            self._submit_stage1(program_id, text)
            return
        e = self.settings.evaluation
        text = self.job_text(self.store.program(program_id).text if text is None else text)
        job = EvalJob(text, tuple(e.tasks), tuple(range(e.seeds)),
                      tuple(e.lr_multipliers), e.time_limit, e.device, e.subspace)
        self.inflight[self.executor.submit(job)] = program_id
        self.counters.submitted += 1

    def job_text(self, text: str) -> str:
        """What an evaluation trains: the program, or with parameter roles the candidate it makes
        with the fixed programs (`dsl.roles.with_fixed_roles`), as text."""
        if self.fixed is None:
            return text
        return print_candidate(with_fixed_roles(parse_program(text), self.settings.roles.evolve, self.fixed))

    def _record(self, jr: JobResult) -> None:
        pid = self.inflight.pop(jr.job_id)
        r, c = jr.result, self.counters
        fitness = r.fitness if r.status == "ok" and math.isfinite(r.fitness) else -math.inf
        with self.store.transaction():
            c.evaluations += 1
            if pid in c.passed:
                c.passed.remove(pid)
            for score in r.scores:
                self.store.add_evaluation(pid, score, jr.worker)
            self.store.finish_program(pid, r.status, fitness, c.evaluations)
            self._fitness[pid] = fitness
            self._memory[pid] = r.state_per_param
            score = self._score(pid, fitness, r.state_per_param)
            if not self.population and pid == WARM_START_ID:      # the warm start: the population is its copies
                births = self.population.fill(pid, fitness, score)
            else:
                births = [self.population.join(pid, fitness, score, self.population.arrived(pid))]
            for birth in births:
                self._push(birth, pid, score)
            if self.target is not None and r.status == "ok" and self._match(self.program(pid)):
                c.found_target, c.found_at = pid, c.evaluations
            self._move_bar()
            challenge = self.settings.promotion is not None and self.population.challenges(fitness)
            if challenge:
                c.challengers.append(pid)
            funnel = self.settings.promotion is None and self._admit_to_funnel(pid)
            self._maybe_migrate()
            self._maybe_restart()
            self.store.add_history(c.evaluations, c.best_fitness, self.population.median_fitness())
            self._save_state()
        if funnel:
            self._submit_funnel(pid)
        if challenge:
            self._submit_promotion(pid)

    def _admit_to_funnel(self, pid: int) -> bool:
        """Mark a program for the funnel if it qualifies; the funnel admits by the fitness selection
        sees, less the optimizer-state penalty."""
        admitted = memory_penalized(self._fitness[pid], self._memory.get(pid), self.settings.memory_penalty)
        if not self._wants_funnel(pid, admitted):
            return False
        self.store.set_funnel(pid, "pending")
        self._funneled.append((admitted, pid))
        return True

    # --- funnel selection -----------------------------------------------------------------------------

    def _wants_funnel(self, pid: int, fitness: float) -> bool:
        """Re-check a program when it reaches the threshold and ranks among the best `top` re-checked."""
        f = self.settings.funnel
        if f is None or not math.isfinite(fitness) or fitness < f.threshold:
            return False
        if len(self._funneled) < f.top:
            return True
        return fitness > sorted(self._funneled, reverse=True)[f.top - 1][0]

    def _submit_funnel(self, program_id: int) -> None:
        f, e = self.settings.funnel, self.settings.evaluation
        job = EvalJob(self.job_text(self.store.program(program_id).text), tuple(f.tasks), tuple(range(f.seeds)),
                      tuple(e.lr_multipliers), e.time_limit, e.device, e.subspace)
        self.funnel_inflight[self.executor.submit(job)] = program_id

    def _record_funnel(self, jr: JobResult) -> None:
        pid = self.funnel_inflight.pop(jr.job_id)
        r = jr.result
        with self.store.transaction():
            for score in r.scores:
                self.store.add_evaluation(pid, score, jr.worker, purpose="funnel")
            self.store.set_funnel(pid, r.status, r.fitness if r.status == "ok" else -math.inf)

    def _score(self, program_id: int, fitness: float, state_per_param: float | None) -> float:
        """What selection compares: fitness less the configured length and memory penalties."""
        s = self.settings
        score = memory_penalized(fitness, state_per_param, s.memory_penalty)
        if s.length_penalty and math.isfinite(score):
            score -= s.length_penalty * self._live_statements(program_id)
        return score

    def _join(self, pid: int, fitness: float, score: float, island: int = 0) -> None:
        self._push(self.population.join(pid, fitness, score, island), pid, score)

    def _push(self, birth: int, pid: int, score: float) -> None:
        """Write down a member the population policy just added, on its island."""
        p = self.population
        self.store.push_population(birth, pid, score, p.island_size, p.island_of.get(birth, 0))

    def _maybe_migrate(self) -> None:
        if not self.population.migration_due():
            return
        moved = self.population.migrate()
        for _, pid, score, birth in moved:
            self._push(birth, pid, score)
        c, n = self.counters, self.population.count
        ring = ", ".join(f"#{pid} {k}->{(k + 1) % n}" for k, pid, _, _ in moved) or "none (each best already there)"
        self.store.add_event("migration", f"migration {c.migrations} after {c.evaluations} evaluations: {ring}",
                             c.evaluations)

    def _maybe_restart(self) -> None:
        if not self.population.restart_due():
            return
        # From the warm start, a fresh lineage: the cache keeps what was evaluated, so retracing
        # the first steps is free, and the best so far stays the run's best.
        start = self.population.restart_from()
        fitness = self._fitness[start]
        score = self._score(start, fitness, self._memory.get(start))
        p = self.population
        island = p.stalled_island() if p.count > 1 else None
        births = p.restart(start, fitness, score)
        self.store.clear_population(island)
        for birth in births:
            self._push(birth, start, score)
        c, s = self.counters, self.settings
        gain = f" by {s.restart_min_gain:g}" if s.restart_min_gain else ""
        what = "population" if island is None else f"island {island}"
        self.store.add_event("restart", f"best not improved{gain} in {s.restart_after} evaluations: {what} "
                                        f"restarted from #{start} (fitness {fitness:+.4f}); best so far "
                                        f"#{c.best_id} ({c.best_fitness:+.4f})", c.evaluations)

    def _match(self, program: Program) -> bool:
        t = self.settings.target
        return matches(program, self.target, t.rel_tol, t.abs_tol) if t else matches(program, self.target)

    def _cancel_inflight(self) -> None:
        """A stop condition ended the run: in-flight children will not be waited for."""
        with self.store.transaction():
            for pid in self.inflight.values():
                self.store.finish_program(pid, "cancelled", -math.inf, None)
            for pid in self.stage1_inflight.values():
                self.store.finish_program(pid, "cancelled", -math.inf, None)
            for pid in self.funnel_inflight.values():
                self.store.set_funnel(pid, "cancelled")
            self.counters.challengers.clear()
            self._save_state()
        for jobs in (self.inflight, self.funnel_inflight, self.stage1_inflight, self.promotion_inflight):
            jobs.clear()

    # --- the evaluation cascade -----------------------------------------------------------------------

    def _submit_stage1(self, program_id: int, text: str | None = None) -> None:
        e = self.settings.evaluation
        text = self.job_text(self.store.program(program_id).text if text is None else text)
        job = EvalJob(text, tuple(e.tasks), tuple(range(e.seeds)), tuple(e.lr_multipliers), e.time_limit,
                      e.device, e.subspace, e.cascade.fraction)
        self.stage1_inflight[self.executor.submit(job)] = program_id

    def _record_stage1(self, jr: JobResult) -> None:
        """A first stage is back: within `margin` of the first stage of the run's best program (or
        before there is one), the program is sent for the full budget; otherwise it is dropped, with
        its first-stage scores stored."""
        pid = self.stage1_inflight.pop(jr.job_id)
        r, c, margin = jr.result, self.counters, self.settings.evaluation.cascade.margin
        fitness = r.fitness if r.status == "ok" and math.isfinite(r.fitness) else -math.inf
        passed = math.isfinite(fitness) and (c.stage1_best is None or fitness >= c.stage1_best - margin)
        with self.store.transaction():
            c.stage1_evaluations += 1
            for score in r.scores:
                self.store.add_evaluation(pid, score, jr.worker, purpose="stage1")
            if passed:
                c.passed.append(pid)
            else:
                c.dropped += 1
                self.population.arrived(pid)     # with islands: it joins none
                self.store.finish_program(pid, "dropped", -math.inf, None)
                self._fitness[pid] = -math.inf
                self._dropped.add(pid)
            self._save_state()
        # Past a budget or time limit a passed program stays pending: a resumed run evaluates it.
        if passed and self._stop_reason() is None:
            self._submit(pid)

    def _move_bar(self) -> None:
        """After the run's best changed: the bar is its first-stage fitness. Anchored to the best by
        full fitness, not the best first stage: a program that starts fast and ends poorly would
        set a bar no good program reaches (benchmarks/cascade.py)."""
        c = self.counters
        if self.settings.evaluation.cascade is None or c.best_id is None or c.best_id == c.stage1_best_of:
            return
        rows = self.store.evaluations(c.best_id, "stage1")
        if rows:
            c.stage1_best = aggregate([-math.inf if e["fitness"] is None else e["fitness"] for e in rows])
            c.stage1_best_of = c.best_id

    def _reuse_drop(self, text: str, s: Screen, parent_id: int, mutation: str, hit: tuple[int, str]) -> None:
        """A child equivalent to a dropped program is dropped with it, at no cost; it is stored (as a
        cache hit with no fitness) but never joins the population."""
        source, kind = hit
        self.counters.drop_reuses += 1
        pid = self.store.add_program(text, s.hash, s.fingerprint, parent_id, mutation, "cached", -math.inf,
                                     source, kind)
        self._hash_of[pid] = s.hash
        self._idle += 1

    # --- noise-aware promotion ------------------------------------------------------------------------

    def _submit_promotion(self, program_id: int) -> None:
        """Re-evaluate a challenger on `promotion.seeds` seeds the search never used."""
        e, n = self.settings.evaluation, self.settings.promotion.seeds
        job = EvalJob(self.job_text(self.store.program(program_id).text), tuple(e.tasks),
                      tuple(range(e.seeds, e.seeds + n)), tuple(e.lr_multipliers), e.time_limit, e.device, e.subspace)
        self.promotion_inflight[self.executor.submit(job)] = program_id

    def _record_promotion(self, jr: JobResult) -> None:
        """A challenger's new seeds are back: promote it if its mean beats the best's by more than the
        noise, else count the refusal. A promoted program may enter the funnel."""
        pid = self.promotion_inflight.pop(jr.job_id)
        c = self.counters
        mean, se = mean_and_se(seed_fitnesses(jr.result, len(self.settings.evaluation.tasks)))
        funnel = False
        with self.store.transaction():
            c.promotion_evaluations += 1
            c.challengers.remove(pid)
            for score in jr.result.scores:
                self.store.add_evaluation(pid, score, jr.worker, purpose="promotion")
            if self.population.beats_best(mean, se):
                before = c.best_id
                self.population.promote(pid, self._fitness[pid], mean, se)
                self._move_bar()
                self.store.add_event("promotion", f"#{pid} is the best: mean {mean:+.4f} +- {se:.4f} over "
                                                  f"{self.settings.promotion.seeds} new seeds"
                                                  + (f", ahead of #{before}" if before is not None else ""),
                                     c.evaluations)
                funnel = self._admit_to_funnel(pid)
            else:
                c.refused += 1
                best = (f"#{c.best_id}'s {c.best_mean:+.4f} +- {c.best_se:.4f} by more than the noise"
                        if c.best_mean is not None else "anything: a seed failed")
                self.store.add_event("refused", f"#{pid} not promoted: mean {mean:+.4f} +- {se:.4f} does not beat "
                                                + best, c.evaluations)
            self._save_state()
        if funnel:
            self._submit_funnel(pid)


def mean_and_se(values: list[float]) -> tuple[float, float]:
    """The mean of per-seed fitnesses and its standard error (stdev / sqrt(n)); -inf and inf when
    a seed failed."""
    if len(values) < 2 or not all(math.isfinite(v) for v in values):
        return -math.inf, math.inf
    return statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))


__all__ = ["Counters", "Evolution", "Outcome", "mean_and_se"]
