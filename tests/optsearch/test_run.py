"""Choosing a run's winner: a memory-aware run chooses as it selected."""
import pytest

from optsearch.evaluators.evaluate import TaskScore
from optsearch.run import choose_winner
from optsearch.search.store import RunStore


def _program(store: RunStore, name: str, funnel: float, state: float) -> int:
    pid = store.add_program(f"def {name}(w, g, lr):\n    u = g * lr\n    return u\n", name, name, None, None)
    store.finish_program(pid, "ok", funnel, pid)
    store.add_evaluation(pid, TaskScore("mlp", "small", "ok", 1.0, funnel, 1.0, [0], [1.0], [1.0], [1.0], [1.0],
                                        10, 0.1, None, state), "w0")
    store.set_funnel(pid, "ok", funnel)
    return pid


@pytest.mark.parametrize("penalty, winner", [(0.0, "adam_like"), (0.05, "lion_like")])
def test_a_memory_aware_run_chooses_its_winner_less_the_state_it_keeps(tmp_path, penalty, winner):
    store = RunStore.create(tmp_path / "run", {"search": {"memory_penalty": penalty}})
    ids = {"adam_like": _program(store, "adam_like", 0.05, 2.0),      # 0.05 - 0.10 with the penalty
           "lion_like": _program(store, "lion_like", 0.02, 1.0)}      # 0.02 - 0.05
    assert choose_winner(store) == (ids[winner], "funnel")


@pytest.mark.parametrize("penalty, first", [(0.0, "adam_like"), (0.05, "lion_like")])
def test_show_ranks_the_funnel_as_the_winner_is_chosen(tmp_path, penalty, first):
    from optsearch.cli_runs import _show_text, show_report
    store = RunStore.create(tmp_path / "run", {"search": {"memory_penalty": penalty}})
    ids = {"adam_like": _program(store, "adam_like", 0.05, 2.0), "lion_like": _program(store, "lion_like", 0.02, 1.0)}
    funnel = show_report(store, tmp_path / "run", top=5)["funnel"]
    assert [e["id"] for e in funnel][0] == ids[first] == choose_winner(store)[0]
    text = _show_text(show_report(store, tmp_path / "run", top=5))
    assert ("less 0.05/state" in text) is (penalty > 0)
