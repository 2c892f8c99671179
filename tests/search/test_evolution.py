"""Regularized evolution on a real (cheap) task: bookkeeping, determinism, restarts, resume."""
import math
from dataclasses import replace

import pytest

from optsearch.discovered import load_zoo
from optsearch.dsl import Const, parse_program, structural_hash
from optsearch.evaluators import InlineExecutor, SubspaceOptions
from optsearch.search.evolution import Evolution
from optsearch.search.settings import EvaluationSettings, IslandSettings, SearchSettings, Target
from optsearch.search.store import RunStore

FAST = EvaluationSettings(tasks=("imitate/small",), seeds=1, lr_multipliers=(0.3, 1.0), time_limit=60)
SETTINGS = SearchSettings(seed=3, population=6, tournament=3, evaluations=16, evaluation=FAST)


def _run(path, settings=SETTINGS, warm="adamw", target=None, create=True):
    store = RunStore.create(path, {"test": True}) if create else RunStore.open(path)
    evo = Evolution(settings, store, InlineExecutor(), load_zoo(warm), load_zoo(target) if target else None)
    return evo.run(), store


def _shape(program):
    """The structural hash with every constant set to 1: equal for programs that differ only in constants."""
    body = tuple(replace(s, args=tuple(Const(1.0) if isinstance(a, Const) else a for a in s.args))
                 for s in program.body)
    return structural_hash(replace(program, body=body))


def _programs(store):
    return [(r.id, r.text, r.status, r.fitness, r.parent, r.mutation) for r in store.programs()]


def test_a_run_keeps_its_books(tmp_path):
    outcome, store = _run(tmp_path / "r")
    c = outcome.counters
    assert outcome.reason == "budget" and c.evaluations == 16
    evaluated = store.programs("evaluated", order="eval_index")
    assert [r.eval_index for r in evaluated] == list(range(1, 17))
    assert evaluated[0].mutation == "warm start" and evaluated[0].parent is None
    assert all(r.parent is not None and r.mutation for r in evaluated[1:])
    assert len(store.evaluations()) == 16  # one task each
    assert c.children == c.rejected + c.cache_hits + c.evaluations - 1 + c.inflight_duplicates
    assert len(store.population()) == SETTINGS.population
    assert len(store.history()) == 16
    best = max(r.fitness for r in evaluated)
    assert outcome.best_fitness == best == store.program(outcome.best_id).fitness
    assert all(store.program(r.reuses).status != "cached" for r in store.programs("cached"))


def test_the_same_seed_gives_the_same_run(tmp_path):
    _, a = _run(tmp_path / "a")
    _, b = _run(tmp_path / "b")
    assert _programs(a) == _programs(b)
    _, c = _run(tmp_path / "c", replace(SETTINGS, seed=4))
    assert _programs(a) != _programs(c)


def test_a_run_continued_later_equals_one_run(tmp_path):
    _, whole = _run(tmp_path / "whole")
    first, part = _run(tmp_path / "part", replace(SETTINGS, evaluations=7))
    assert first.counters.evaluations == 7
    part.close()
    second, part = _run(tmp_path / "part", create=False)
    assert second.counters.evaluations == 16
    assert _programs(part) == _programs(whole)


def test_restarts_from_the_best_when_progress_stalls(tmp_path):
    outcome, store = _run(tmp_path / "r", replace(SETTINGS, restart_after=2, evaluations=12))
    assert outcome.counters.restarts >= 1
    (event, *_) = store.events()
    assert event["kind"] == "restart" and "restarted from #" in event["detail"]


def test_stops_when_the_target_is_found(tmp_path):
    settings = replace(SETTINGS, target=Target("lion"), evaluations=50)
    outcome, store = _run(tmp_path / "r", settings, warm="lion", target="lion")
    assert outcome.reason == "target" and outcome.counters.found_at == 1 and outcome.counters.found_target == 1


def test_stops_at_a_fitness_threshold(tmp_path):
    outcome, _ = _run(tmp_path / "r", replace(SETTINGS, stop_fitness=-1.0, evaluations=50))
    assert outcome.reason == "stop_fitness" and outcome.counters.evaluations == 1


def test_failed_evaluations_are_results_not_crashes(tmp_path):
    settings = replace(SETTINGS, evaluation=replace(FAST, tasks=("quadratic/small",), time_limit=1e-9), evaluations=4)
    outcome, store = _run(tmp_path / "r", settings)
    assert outcome.counters.evaluations == 4
    assert {r.status for r in store.programs("evaluated")} == {"timeout"}
    assert outcome.best_fitness == -math.inf


def test_candidates_can_be_evaluated_inside_a_subspace(tmp_path):
    settings = replace(SETTINGS, evaluations=3,
                       evaluation=replace(FAST, tasks=("quadratic/small",), subspace=SubspaceOptions(2)))
    outcome, store = _run(tmp_path / "r", settings)
    assert outcome.counters.evaluations == 3
    (e, *_) = store.evaluations()
    assert e["status"] == "ok" and e["state_per_param"] < 2.0  # AdamW's two moments, projected


def test_the_funnel_rechecks_the_best_programs_on_held_out_tasks(tmp_path):
    from optsearch.search.settings import FunnelSettings
    settings = replace(SETTINGS, evaluations=10, funnel=FunnelSettings(("quadratic/small",), 1, -10.0, 2))
    outcome, store = _run(tmp_path / "r", settings)
    checked = store.programs("funnel")
    assert 2 <= len(checked) < 10 and {r.funnel_status for r in checked} <= {"ok", "diverged", "timeout"}
    assert checked[0].id == 1  # the warm start is the first to reach the threshold
    funnel_evals = store.evaluations(purpose="funnel")
    assert {(e["task"], e["size"]) for e in funnel_evals} == {("quadratic", "small")}
    assert len(funnel_evals) == len(checked) and outcome.counters.evaluations == 10  # not part of the budget
    # each re-checked program was among the two best search fitnesses when it finished
    for r in checked[2:]:
        earlier = [p.fitness for p in checked if p.eval_index < r.eval_index]
        assert r.fitness > sorted(earlier, reverse=True)[1]


def test_a_stalled_lineage_starts_over_from_the_warm_start_and_the_best_is_kept(tmp_path):
    # a gain of 10 never happens on imitate: every 3 evaluations the population is the warm start again
    settings = replace(SETTINGS, restart_after=3, restart_min_gain=10.0, restart_from="warm_start", evaluations=14)
    outcome, store = _run(tmp_path / "r", settings)
    events = [e for e in store.events() if e["kind"] == "restart"]
    assert outcome.counters.restarts == len(events) >= 3
    assert all("restarted from #1 " in e["detail"] for e in events)
    evaluated = store.programs("evaluated")
    assert outcome.best_fitness == max(r.fitness for r in evaluated)  # the run's best survives restarts


def test_small_gains_do_not_count_as_progress(tmp_path):
    # with min gain 0 any improvement resets the stall clock; with a large one, only restarts do
    plain, _ = _run(tmp_path / "a", replace(SETTINGS, restart_after=4, evaluations=14))
    strict, _ = _run(tmp_path / "b", replace(SETTINGS, restart_after=4, restart_min_gain=10.0, evaluations=14))
    assert strict.counters.restarts >= plain.counters.restarts and strict.counters.restarts >= 2


def test_tuning_children_move_only_the_constants_of_the_population_best(tmp_path):
    outcome, store = _run(tmp_path / "r", replace(SETTINGS, tune_share=0.5, evaluations=20))
    rows = store.programs()
    tuned = [r for r in rows if r.mutation and r.mutation.startswith("tune:")]
    others = [r for r in rows[1:] if r not in tuned]
    assert tuned and others  # about half and half
    for r in tuned:
        assert set(r.mutation[len("tune:"):].split("+")) <= {"perturb_constant", "perturb_all"}
        child, parent = parse_program(r.text), parse_program(store.program(r.parent).text)
        # the same program up to its constants (the child's simplification may only drop statements)
        assert len(child.body) <= len(parent.body)
        if len(child.body) == len(parent.body):
            assert _shape(child) == _shape(parent)
    # with no share no child is a tuning child, and the run is the one it always was
    _, plain = _run(tmp_path / "p")
    _, again = _run(tmp_path / "q", replace(SETTINGS, tune_share=0.0))
    assert _programs(plain) == _programs(again)
    assert not any(r.mutation and r.mutation.startswith("tune:") for r in plain.programs())


def test_a_stalled_best_has_its_whole_neighbourhood_tried_and_a_sweep_resumes_where_it_stopped(tmp_path):
    settings = replace(SETTINGS, sweep_after=3, evaluations=30)
    _, whole = _run(tmp_path / "whole", settings)
    swept = [r for r in whole.programs() if r.mutation and r.mutation.startswith("sweep:")]
    assert len(swept) >= 5
    assert {r.mutation for r in swept} <= {"sweep:wrap", "sweep:delete", "sweep:change_arg", "sweep:swap"}
    assert set(r.parent for r in swept) <= set(whole.counters().swept)
    # stopped in the middle and continued later: the same run, sweeps included
    first, part = _run(tmp_path / "part", replace(settings, evaluations=17))
    part.close()
    _, part = _run(tmp_path / "part", settings, create=False)
    assert _programs(part) == _programs(whole)


def test_islands_keep_the_store_in_step_with_the_policy(tmp_path):
    settings = replace(SETTINGS, tournament=2, restart_after=4, islands=IslandSettings(count=3, migrate_every=5, migrants=1))
    store = RunStore.create(tmp_path / "r", {"test": True})
    evo = Evolution(settings, store, InlineExecutor(), load_zoo("adamw"))
    outcome = evo.run()
    p = evo.population
    assert outcome.counters.evaluations == 16 and outcome.counters.migrations == 3 and outcome.counters.restarts >= 1
    assert store.population() == p.members and store.population_islands() == {b: k for b, k in p.island_of.items() if k}
    assert [len(p.island(k)) for k in range(3)] == [2, 2, 2]
    assert [e["eval_index"] for e in store.events() if e["kind"] == "migration"] == [5, 10, 15]
    assert outcome.counters.awaiting == {}           # every child sent out came back to its island
