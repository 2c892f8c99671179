"""The population policy on plain numbers: no store, no executor, no disk, no clock."""
import math
import random
from dataclasses import replace

from optsearch.search.population import MAX_IDLE_CHILDREN, WARM_START_ID, Population
from optsearch.search.records import Counters
from optsearch.search.settings import PromotionSettings, SearchSettings

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
