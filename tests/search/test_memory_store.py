"""The in-memory store answers as the SQLite store does, so the search runs on either alike."""
import math
from types import SimpleNamespace

import pytest

from optsearch.discovered import load_zoo
from optsearch.evaluators import InlineExecutor
from optsearch.search.evolution import Evolution
from optsearch.search.memory_store import MemoryStore
from optsearch.search.records import Counters, Finished, SearchState
from optsearch.search.settings import EvaluationSettings, SearchSettings
from optsearch.search.store import RunStore

FAST = EvaluationSettings(tasks=("imitate/small",), seeds=1, lr_multipliers=(0.3, 1.0), time_limit=60)
SETTINGS = SearchSettings(seed=3, population=6, tournament=3, evaluations=12, restart_after=3, sweep_after=2,
                          evaluation=FAST)
QUERIES = ("all", "pending", "cached", "evaluated", "funnel", "funnel_pending", "rechecked", "ranked")


def _score(fitness):
    return SimpleNamespace(task="imitate", size="small", status="ok", metric=0.1, fitness=fitness, reference=0.2,
                           seeds=[0], per_seed=[0.1], best_lr=[1.0], metrics=[0.1], steps=64, seconds=0.1,
                           error=None, state_per_param=2.0)


def _fill(store):
    a = store.add_program("a", "h1", "f1", None, "warm start")
    b = store.add_program("b", "h2", "f2", a, "wrap")
    c = store.add_program("c", "h2", "f2", b, "delete", "cached", 0.5, b, "hash")
    d = store.add_program("d", "h3", "f3", b, "swap")
    e = store.add_program("e", "h4", "f4", d, "swap")
    store.add_evaluation(a, _score(0.2), "w")
    store.finish_program(a, "ok", 0.2, 2)
    store.finish_program(b, "ok", 0.5, 1)
    store.finish_program(d, "diverged", -math.inf, 3)
    store.finish_program(e, "ok", math.inf, 4)      # not finite: stored as a failure, as SQLite has no inf
    store.set_funnel(a, "ok", 0.1)
    store.set_funnel(b, "pending")
    return c


def _rows(rows):
    return [(r.id, r.text, r.status, r.fitness, r.parent, r.eval_index, r.funnel_status, r.funnel_fitness)
            for r in rows]


def test_every_typed_query_and_order_answers_alike(tmp_path):
    disk, memory = RunStore.create(tmp_path / "run", {}), MemoryStore()
    _fill(disk), _fill(memory)
    for query in QUERIES:
        for order in ("id", "eval_index", "fitness"):
            assert _rows(disk.programs(query, order)) == _rows(memory.programs(query, order)), (query, order)
    assert disk.state_per_param(1) == memory.state_per_param(1) == 2.0
    assert disk.state_per_param(2) is memory.state_per_param(2) is None
    with pytest.raises(ValueError):
        disk.programs("status = 'ok'")                # SQL fragments are not queries


def test_state_round_trips_and_a_failed_transaction_leaves_nothing_behind(tmp_path):
    for store in (RunStore.create(tmp_path / "run", {}), MemoryStore()):
        assert store.search_state() is None and store.counters() == Counters()
        counters = Counters(evaluations=3, best_fitness=-math.inf, swept=[2], rejected_reasons={"type": 1})
        store.save_search_state(SearchState(counters, (3, tuple(range(625)), None)))
        with pytest.raises(RuntimeError):
            with store.transaction():
                store.add_program("x", None, None, None, None)
                store.push_population(1, 1, 0.5, 4)
                store.save_search_state(SearchState(Counters(evaluations=9), (3, tuple(range(625)), None)))
                raise RuntimeError("killed half-way")
        assert store.count_programs() == 0 and store.population() == []
        assert store.search_state() == SearchState(counters, (3, tuple(range(625)), None))
        store.set_finished(Finished("budget", 3))
        assert store.finished() == Finished("budget", 3)


def test_a_search_in_memory_is_the_search_on_disk(tmp_path):
    def run(store):
        evo = Evolution(SETTINGS, store, InlineExecutor(), load_zoo("adamw"))
        return evo.run(), [(r.id, r.text, r.status, r.fitness, r.parent, r.mutation, r.eval_index)
                           for r in store.programs()]

    (on_disk, disk_rows), (in_memory, memory_rows) = run(RunStore.create(tmp_path / "run", {})), run(MemoryStore())
    assert memory_rows == disk_rows and len(memory_rows) >= 12
    assert in_memory.counters.restarts == on_disk.counters.restarts >= 1
    assert in_memory.counters.swept == on_disk.counters.swept
    assert in_memory.best_id == on_disk.best_id


def test_islands_age_and_clear_alike_in_both_stores(tmp_path):
    answers = []
    for store in (RunStore.create(tmp_path / "run", {}), MemoryStore()):
        pid = store.add_program("p", None, None, None, None)
        for birth in range(1, 10):
            store.push_population(birth, pid, float(birth), 3, island=birth % 2)
        assert [b for b, _, _ in store.population()] == [4, 5, 6, 7, 8, 9]   # each island kept its 3 youngest
        before = store.population_islands()
        store.clear_population(1)
        answers.append((before, store.population(), store.population_islands()))
    assert answers[0] == answers[1]
    assert answers[0][0] == {5: 1, 7: 1, 9: 1} and [b for b, _, _ in answers[0][1]] == [4, 6, 8]
