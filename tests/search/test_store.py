"""The run store: transactional writes, ageing, lineage, clear errors for missing runs."""
import math
import random
from types import SimpleNamespace

import pytest

from optsearch.dsl import OptsearchError
from optsearch.search.records import Counters, SearchState
from optsearch.search.store import RunStore


@pytest.fixture
def store(tmp_path):
    s = RunStore.create(tmp_path / "run", {"name": "run"})
    yield s
    s.close()


def _score(task="imitate", fitness=0.5):
    return SimpleNamespace(task=task, size="small", status="ok", metric=0.1, fitness=fitness, reference=0.2,
                           seeds=[0], per_seed=[0.1], best_lr=[1.0], metrics=[0.1, math.inf], steps=64, seconds=0.1,
                           error=None)


def test_a_run_is_created_once_and_reopened(tmp_path, store):
    assert store.config == {"name": "run"}
    with pytest.raises(OptsearchError, match="a run already exists here; continue it with --resume"):
        RunStore.create(tmp_path / "run", {})
    with RunStore.open(tmp_path / "run", readonly=True) as again:
        assert again.config == {"name": "run"}
    with pytest.raises(OptsearchError, match="no run store at"):
        RunStore.open(tmp_path / "missing")


def test_a_file_that_is_not_a_run_store_is_refused(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.db").write_text("not sqlite at all " * 100)
    with pytest.raises(OptsearchError, match="not a run store"):
        RunStore.open(tmp_path / "bad")


def test_a_failed_transaction_leaves_nothing_behind(store):
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.add_program("text", "h", "f", None, "warm start")
            store.set("counter", 1)
            raise RuntimeError("killed half-way")
    assert store.count_programs() == 0 and store.get("counter") is None


def test_programs_evaluations_and_non_finite_numbers_round_trip(store):
    pid = store.add_program("def f(w, g, lr): ...", "h", "f", None, "warm start")
    store.add_evaluation(pid, _score(), "worker-1")
    store.finish_program(pid, "diverged", -math.inf, 1)
    row = store.program(pid)
    assert row.status == "diverged" and row.fitness == -math.inf and row.eval_index == 1
    (e,) = store.evaluations(pid)
    assert e["worker"] == "worker-1" and e["task"] == "imitate" and e["metrics"] == "[0.1, null]"
    with pytest.raises(OptsearchError, match="no program with id 9"):
        store.program(9)


def test_population_ages_out_the_oldest(store):
    pid = store.add_program("p", None, None, None, None)
    for birth in range(1, 8):
        store.push_population(birth, pid, float(birth), size=4)
    assert [b for b, _, _ in store.population()] == [4, 5, 6, 7]


def test_lineage_walks_back_to_the_warm_start(store):
    a = store.add_program("a", None, None, None, "warm start")
    b = store.add_program("b", None, None, a, "wrap")
    c = store.add_program("c", None, None, b, "perturb_constant")
    assert [r.id for r in store.lineage(c)] == [c, b, a]


def test_a_reader_sees_commits_while_the_writer_holds_the_store(tmp_path, store):
    store.add_program("a", None, None, None, None)
    with RunStore.open(tmp_path / "run", readonly=True) as reader:
        assert reader.count_programs() == 1
        store.add_program("b", None, None, None, None)
        assert reader.count_programs() == 2


def test_an_empty_file_left_by_a_failed_creation_neither_blocks_nor_resumes(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.db").write_bytes(b"")
    with pytest.raises(OptsearchError, match="the run store is empty \\(its creation failed\\)"):
        RunStore.open(tmp_path / "run")
    with RunStore.create(tmp_path / "run", {"name": "run"}) as store:
        assert store.config == {"name": "run"}


def test_a_store_from_before_islands_opens_with_every_member_on_island_0(tmp_path, store):
    pid = store.add_program("p", None, None, None, None)
    store.push_population(1, pid, 0.5, size=4)
    store.save_search_state(SearchState(Counters(), random.Random(0).getstate()))
    store.db.execute("ALTER TABLE population DROP COLUMN island")     # the schema before islands
    store.close()
    with RunStore.open(tmp_path / "run", readonly=True) as reader:      # a reader changes nothing
        assert reader.population() == [(1, pid, 0.5)] and reader.population_islands() == {}
    with RunStore.open(tmp_path / "run") as writer:                     # a writer adds the column
        writer.push_population(2, pid, 0.7, size=4, island=1)
        assert writer.population() == [(1, pid, 0.5), (2, pid, 0.7)] and writer.population_islands() == {2: 1}
