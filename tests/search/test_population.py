"""The population policy on plain numbers: no store, no executor, no disk, no clock."""
import math
import random
from dataclasses import replace

from optsearch.search.population import MAX_IDLE_CHILDREN, WARM_START_ID, Population
from optsearch.search.records import Counters
from optsearch.search.settings import IslandSettings, PromotionSettings, SearchSettings

SETTINGS = SearchSettings(seed=0, population=4, tournament=2, evaluations=10)


def _population(settings=SETTINGS, seed=0) -> Population:
    return Population(settings, random.Random(seed), Counters())


def test_the_oldest_member_ages_out_and_births_count_up():
    p = _population()
    births = [p.join(pid, float(pid), float(pid)) for pid in range(1, 7)]
    assert births == [1, 2, 3, 4, 5, 6]
    assert [m[1] for m in p.members] == [3, 4, 5, 6]
    assert p.counters.best_id == 6 and p.counters.best_fitness == 6.0


def test_a_tournament_picks_the_best_of_its_draw_and_is_a_function_of_the_seed():
    a, b = _population(), _population()
    for p in (a, b):
        for pid in range(1, 5):
            p.join(pid, float(pid), float(pid))
    picks = [a.tournament() for _ in range(50)]
    assert picks == [b.tournament() for _ in range(50)]
    assert set(picks) <= {2, 3, 4} and 4 in picks      # the worst member never wins a draw of two
    whole = replace(SETTINGS, tournament=4)
    c = Population(whole, random.Random(0), Counters(), a.members)
    assert {c.tournament() for _ in range(10)} == {4}


def test_tuning_children_come_from_the_best_with_constant_moves_only():
    p = _population(replace(SETTINGS, tune_share=1.0))
    for pid, f in ((1, 0.1), (2, 0.9), (3, 0.5)):
        p.join(pid, f, f)
    parent, weights, tag = p.parent()
    assert parent == 2 and tag == "tune:" and set(weights) == {"perturb_constant", "perturb_all"}


def test_a_stall_restarts_the_population_from_copies_of_the_best():
    p = _population(replace(SETTINGS, restart_after=3))
    p.fill(WARM_START_ID, 0.0, 0.0)
    p.counters.evaluations = 1
    p.join(5, 0.5, 0.5)
    p.counters.evaluations = 3
    assert not p.restart_due()
    p.counters.evaluations = 4
    assert p.restart_due() and p.restart_from() == 5
    births = p.restart(5, 0.5, 0.5)
    assert len(births) == 4 and {m[1] for m in p.members} == {5}
    assert p.counters.restarts == 1 and p.counters.last_improvement == 4 and not p.restart_due()
    warm = _population(replace(SETTINGS, restart_after=3, restart_from="warm_start"))
    warm.join(5, 0.5, 0.5)
    assert warm.restart_from() == WARM_START_ID


def test_a_sweep_walks_every_neighbour_of_the_stalled_best_once():
    p = _population(replace(SETTINGS, sweep_after=2))
    p.join(7, 0.3, 0.3)
    asked = []

    def neighbours(pid):
        asked.append(pid)
        return [("child-a", "wrap"), ("child-b", "delete")]

    assert p.next_sweep(neighbours) is None          # not stalled yet
    p.counters.evaluations = 2
    assert p.next_sweep(neighbours) == (7, "child-a", "sweep:wrap")
    assert p.next_sweep(neighbours) == (7, "child-b", "sweep:delete")
    assert p.next_sweep(neighbours) is None          # done, and the best is never swept twice
    assert p.next_sweep(neighbours) is None
    assert p.counters.swept == [7] and set(asked) == {7}


def test_the_search_stops_for_the_first_reason_that_holds():
    p = _population(replace(SETTINGS, evaluations=10, seconds=60.0, stop_fitness=0.9))
    assert p.stop_reason(inflight=0, elapsed=0.0, idle=0) is None
    assert p.stop_reason(inflight=0, elapsed=0.0, idle=MAX_IDLE_CHILDREN) == "exhausted"
    assert p.stop_reason(inflight=0, elapsed=61.0, idle=0) == "seconds"
    p.counters.evaluations = 8
    assert p.stop_reason(inflight=2, elapsed=0.0, idle=0) == "budget"    # in-flight evaluations count
    p.join(3, 0.95, 0.95)
    assert p.stop_reason(inflight=0, elapsed=0.0, idle=0) == "stop_fitness"
    p.counters.found_target = 3
    assert p.stop_reason(inflight=0, elapsed=0.0, idle=0) == "target"


def test_with_promotion_joining_never_makes_the_best_and_a_lead_must_beat_the_noise():
    p = _population(replace(SETTINGS, promotion=PromotionSettings(seeds=3)))
    p.join(1, 0.5, 0.5)
    assert p.counters.best_id is None and p.challenges(0.5) and not p.challenges(-math.inf)
    assert p.beats_best(0.0, 0.01)                       # no best yet: any finite mean is promoted
    p.promote(1, 0.5, 0.10, 0.01)
    c = p.counters
    assert (c.best_id, c.best_fitness, c.best_mean, c.best_se, c.promotions) == (1, 0.5, 0.10, 0.01, 1)
    assert p.challenges(0.11) and not p.challenges(0.10)   # a challenger's search fitness beats the best's mean
    # the lead must exceed the standard error of the difference: hypot(0.01, 0.02) = 0.0224
    assert not p.beats_best(0.12, 0.02) and p.beats_best(0.123, 0.02)
    assert not p.beats_best(-math.inf, math.inf)


ISLANDS = replace(SETTINGS, population=8, tournament=2, islands=IslandSettings(count=2, migrate_every=5, migrants=1))


def _islands(p: Population) -> list[list[int]]:
    return [[pid for _, pid, _ in p.island(k)] for k in range(p.count)]


def test_islands_split_the_population_and_each_ages_on_its_own():
    p = _population(ISLANDS)
    assert p.fill(WARM_START_ID, 0.0, 0.0) == list(range(1, 9))
    assert p.island_size == 4 and _islands(p) == [[1] * 4, [1] * 4]
    p.join(2, 0.2, 0.2, island=1)
    p.join(3, 0.3, 0.3, island=1)
    assert _islands(p) == [[1] * 4, [1, 1, 2, 3]]        # island 1's two oldest left, island 0 kept all
    assert p.counters.best_id == 3 and len(p) == 8


def test_children_go_to_the_islands_in_turn_and_compete_only_on_their_own():
    p = _population(ISLANDS)
    assert [p.next_island() for _ in range(5)] == [0, 1, 0, 1, 0]
    for pid in range(1, 9):
        p.join(pid, float(pid), float(pid), island=(pid - 1) // 4)      # island 0: 1-4, island 1: 5-8
    assert {p.tournament(0) for _ in range(30)} <= {2, 3, 4}
    assert {p.tournament(1) for _ in range(30)} <= {6, 7, 8}
    assert p.best() == 8 and p.best(0) == 4
    tuned = Population(replace(ISLANDS, tune_share=1.0), random.Random(0), Counters(), p.members, p.island_of)
    assert tuned.parent(0)[:1] == (4,) and tuned.parent(1)[:1] == (8,)   # tuning children: their island's best
    assert p.home(6) == 1 and p.home(99) == 0


def test_a_child_in_flight_joins_the_island_it_was_drawn_for():
    p = _population(ISLANDS)
    p.expect(12, 1)
    assert p.counters.awaiting == {"12": 1}              # in the counters: saved with the RNG state
    assert p.arrived(12) == 1 and p.counters.awaiting == {}


def test_migration_copies_each_islands_best_to_the_next_on_the_ring():
    p = _population(ISLANDS)
    for pid in range(1, 9):
        p.join(pid, float(pid), float(pid), island=(pid - 1) // 4)
    assert not p.migration_due()
    p.counters.evaluations = 5
    assert p.migration_due()
    moved = p.migrate()
    assert [(k, pid) for k, pid, _, _ in moved] == [(0, 4), (1, 8)]
    assert _islands(p) == [[2, 3, 4, 8], [6, 7, 8, 4]]   # the oldest of each island left
    assert p.counters.migrations == 1
    assert p.migrate() == [] and _islands(p) == [[2, 3, 4, 8], [6, 7, 8, 4]]   # each best is already there


def test_a_stalled_island_restarts_alone_from_the_global_best():
    p = _population(replace(ISLANDS, restart_after=3))
    p.fill(WARM_START_ID, 0.0, 0.0)
    p.counters.evaluations = 2
    p.join(5, 0.5, 0.5, island=0)
    p.counters.evaluations = 3
    assert p.restart_due() and p.stalled_island() == 1   # island 1 has not improved since evaluation 0
    assert p.restart_from() == 5
    births = p.restart(5, 0.5, 0.5)
    assert births == [10, 11, 12, 13] and _islands(p) == [[1, 1, 1, 5], [5] * 4]
    assert p.counters.restarts == 1 and not p.restart_due()
    p.counters.evaluations = 5
    assert p.stalled_island() == 0                     # island 0 last improved at evaluation 2


def test_one_island_is_the_single_population_draw_for_draw():
    one = replace(SETTINGS, islands=IslandSettings(count=1))
    a, b = _population(), _population(one)
    for p in (a, b):
        for pid in range(1, 7):
            p.join(pid, float(pid), float(pid), island=p.next_island())
        p.expect(9, p.next_island())
    assert a.members == b.members and b.island_of == {}
    assert [a.parent() for _ in range(20)] == [b.parent(b.next_island()) for _ in range(20)]
    assert a.counters == b.counters and b.counters.awaiting == {} and b.counters.island_marks == []


def test_a_population_read_back_from_a_store_knows_island_0_by_omission():
    p = _population(ISLANDS)
    p.fill(WARM_START_ID, 0.0, 0.0)
    stored = {b: k for b, k in p.island_of.items() if k}         # what `population_islands` returns
    q = Population(ISLANDS, random.Random(0), p.counters, p.members, stored)
    q.join(2, 0.2, 0.2, island=0)
    assert _islands(q) == [[1, 1, 1, 2], [1] * 4]
