"""A search on a simulated multi-node Ray cluster (head + 2 nodes on loopback) that loses a node."""
import pytest

from optsearch.discovered import load_zoo
from optsearch.search.evolution import Evolution
from optsearch.search.settings import EvaluationSettings, SearchSettings
from optsearch.search.store import RunStore

pytest.importorskip("ray")
from optsearch.evaluators.ray_executor import RayExecutor  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SETTINGS = SearchSettings(seed=2, population=4, tournament=2, evaluations=14,
                          evaluation=EvaluationSettings(tasks=("quadratic/small",), lr_multipliers=(0.3, 1.0)))


def _finished(store):
    return {r.id: (r.text, r.status, r.fitness, r.eval_index) for r in store.programs("evaluated")}


def test_a_search_completes_on_a_cluster_that_loses_a_node(ray_cluster, tmp_path):
    cluster, nodes = ray_cluster
    store = RunStore.create(tmp_path / "run", {})
    before_removal: dict = {}

    def progress(evo: Evolution) -> None:
        if not before_removal and evo.counters.evaluations >= 5:
            before_removal.update(_finished(store))
            cluster.remove_node(nodes[1], allow_graceful=False)

    with RayExecutor(workers=2) as executor:
        outcome = Evolution(SETTINGS, store, executor, load_zoo("adamw"), progress=progress).run()
    assert before_removal, "the node was never removed"
    after = _finished(store)
    assert outcome.reason == "budget" and outcome.counters.evaluations == 14 == len(after)
    assert all(after[pid] == row for pid, row in before_removal.items())  # nothing finished was lost
    assert {status for _, status, _, _ in after.values()} <= {"ok", "diverged"}  # in-flight work was retried
    workers = {e["worker"] for e in store.evaluations()}
    assert len({w.split("/")[1] for w in workers}) == 2  # both nodes worked before one was lost
