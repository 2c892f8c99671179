"""The evaluation cascade and noise-aware promotion on a real (cheap) task: what is dropped, what is
promoted, and that a run continued later is the run it would have been."""
import json
import math
import statistics
from dataclasses import replace

from optsearch.discovered import load_zoo
from optsearch.evaluators import InlineExecutor
from optsearch.search.evolution import Evolution, mean_and_se
from optsearch.search.settings import (
    CascadeSettings, EvaluationSettings, IslandSettings, PromotionSettings, SearchSettings,
)
from optsearch.search.store import RunStore

MARGIN = 0.02
FAST = EvaluationSettings(tasks=("imitate/small",), seeds=1, lr_multipliers=(0.3, 1.0), time_limit=60,
                          cascade=CascadeSettings(fraction=0.25, margin=MARGIN))
SETTINGS = SearchSettings(seed=3, population=6, tournament=3, evaluations=16, evaluation=FAST,
                          promotion=PromotionSettings(seeds=3))


def _run(path, settings=SETTINGS, create=True):
    store = RunStore.create(path, {"test": True}) if create else RunStore.open(path)
    return Evolution(settings, store, InlineExecutor(), load_zoo("adamw")).run(), store


def _stage1(store, pid):
    (e,) = store.evaluations(pid, "stage1")
    return -math.inf if e["fitness"] is None else e["fitness"]


def test_the_cascade_drops_what_its_first_stage_puts_far_below_the_best_and_nothing_dropped_joins(tmp_path):
    outcome, store = _run(tmp_path / "r", replace(SETTINGS, promotion=None))
    c = outcome.counters
    dropped = [r for r in store.programs() if r.status == "dropped"]
    assert c.evaluations == 16 and c.dropped == len(dropped) > 0
    assert c.stage1_evaluations == c.evaluations + c.dropped + len(store.programs("pending"))
    best, bar = -math.inf, None      # inline: results come back in the order they were sent
    for e in store.evaluations():
        row = store.program(e["program_id"])
        if e["purpose"] == "stage1":
            first = _stage1(store, row.id)
            if row.status == "dropped":
                assert bar is not None and first < bar - MARGIN and row.eval_index is None
                assert not store.evaluations(row.id, "search")
            else:
                assert bar is None or first >= bar - MARGIN
        elif row.fitness > best:         # a new best: its first stage is the bar
            best, bar = row.fitness, _stage1(store, row.id)
    assert c.stage1_best == _stage1(store, c.best_id) and c.stage1_best_of == c.best_id
    members = {pid for _, pid, _ in store.population()}
    assert not members & {r.id for r in dropped}
    reused = [r for r in store.programs("cached") if store.program(r.reuses).status == "dropped"]
    assert c.drop_reuses == len(reused) and all(r.fitness == -math.inf and r.id not in members for r in reused)


def test_a_challenger_becomes_the_best_only_when_its_lead_on_new_seeds_beats_the_noise(tmp_path):
    outcome, store = _run(tmp_path / "r")
    c = outcome.counters
    events = store.events()
    promoted = [e for e in events if e["kind"] == "promotion"]
    assert c.promotions == len(promoted) >= 1 and c.refused == sum(e["kind"] == "refused" for e in events)
    assert c.promotion_evaluations == c.promotions + c.refused and not c.challengers
    rechecks = store.evaluations(c.best_id, "promotion")
    assert [json.loads(e["seeds"]) for e in rechecks] == [[1, 2, 3]]      # new seeds, not the search's seed 0
    per_seed = [(e["reference"] - m) / abs(e["reference"]) for e in rechecks for m in json.loads(e["per_seed"])]
    assert all(map(math.isclose, (c.best_mean, c.best_se), mean_and_se(per_seed)))
    assert outcome.best_id == c.best_id and outcome.best_fitness == store.program(c.best_id).fitness


def test_mean_and_se_come_from_the_seeds_and_a_failed_seed_is_no_lead():
    mean, se = mean_and_se([0.1, 0.2, 0.3])
    assert mean == statistics.fmean([0.1, 0.2, 0.3]) and math.isclose(se, 0.1 / math.sqrt(3))
    assert mean_and_se([0.1, -math.inf]) == (-math.inf, math.inf)


def test_a_run_with_cascade_and_promotion_stopped_twice_equals_one_run(tmp_path):
    def books(store):
        return ([(r.id, r.text, r.status, r.fitness, r.eval_index) for r in store.programs()],
                [(e["program_id"], e["purpose"], e["seeds"], e["fitness"]) for e in store.evaluations()],
                store.counters().best_id, store.counters().refused, store.counters().dropped)

    _, whole = _run(tmp_path / "whole")
    path = tmp_path / "part"
    for k, budget in enumerate((5, 11, 16)):
        outcome, part = _run(path, replace(SETTINGS, evaluations=budget), create=k == 0)
        assert outcome.counters.evaluations == budget
        part.close()
    assert books(RunStore.open(path)) == books(whole)


def test_on_islands_a_dropped_program_is_awaited_by_no_island(tmp_path):
    islands = IslandSettings(count=2, migrate_every=4, migrants=1)
    outcome, store = _run(tmp_path / "r", replace(SETTINGS, population=6, tournament=2, islands=islands))
    c = outcome.counters
    assert c.dropped > 0 and c.evaluations == 16
    assert set(c.awaiting) == {str(r.id) for r in store.programs("pending")}   # only what is still to evaluate
