"""The Python API as a notebook uses it: search, interrupt, resume, inspect, train with the find."""
from __future__ import annotations

import _thread
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

import optsearch
from optsearch.dsl.export import export_program
from optsearch.evaluators.evaluate import TaskScore
from optsearch.records import hall_of_fame
from optsearch.search.store import RunStore

ROOT = Path(__file__).resolve().parents[2]


def tiny_config(evaluations: int = 12, name: str = "tiny") -> dict:
    return {"name": name, "seed": 0, "warm_start": "adamw", "search": {"population": 4, "tournament": 2},
            "evaluation": {"tasks": ["quadratic/small"], "seeds": 1, "lr_multipliers": [1.0]},
            "budget": {"evaluations": evaluations}, "executor": {"kind": "inline"}}


def finished_evaluations(run_dir: Path) -> dict[int, tuple]:
    """eval_index -> (program id, text, fitness) of every finished search evaluation."""
    with RunStore.open(run_dir, readonly=True) as store:
        return {r.eval_index: (r.id, r.text, r.fitness) for r in store.programs("evaluated")}


@pytest.mark.slow
def test_readme_python_example_runs_unchanged(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "my_optimizer.py").is_file()
    assert finished_evaluations(tmp_path / "runs" / "api_example").keys() == set(range(1, 25))
    assert "length" in done.stdout and "fitness" in done.stdout    # the hall of fame's table


@pytest.mark.slow
@pytest.mark.parametrize("interrupt", [_thread.interrupt_main, lambda: signal.raise_signal(signal.SIGINT)],
                         ids=["interrupt_main", "SIGINT"])
def test_an_interrupt_from_another_thread_stops_cleanly_and_resume_loses_nothing(tmp_path, interrupt):
    """As a notebook's interrupt button does (Jupyter sends the kernel SIGINT): KeyboardInterrupt
    raised in the main thread from elsewhere, wherever the search happens to be."""
    run_dir = tmp_path / "run"
    sent = []

    def interrupt_after_three(counters):
        if counters.evaluations >= 3 and not sent:
            sent.append(counters.evaluations)
            threading.Thread(target=interrupt).start()

    run = optsearch.evolve(tiny_config(30), run_dir, progress=interrupt_after_three)
    assert run.interrupted and sent
    assert run.finished is None                      # stopped, not finished
    before = finished_evaluations(run_dir)
    assert 3 <= len(before) < 30
    run = optsearch.resume(run, progress=False)
    assert not run.interrupted and run.finished.reason == "budget"
    after = finished_evaluations(run_dir)
    assert after.keys() == set(range(1, 31))
    assert {i: after[i] for i in before} == before   # every evaluation finished before the interrupt is kept
    run.close()


def test_a_run_answers_typed_questions_and_closes(tmp_path):
    with optsearch.evolve(tiny_config(10), tmp_path / "run", progress=False) as run:
        assert run.counters.evaluations == 10
        best = run.best
        assert best is not None and best.source == f"{tmp_path / 'run'}#{run.best_id}"
        steps = run.lineage(run.best_id)
        assert steps[0].parent is None and steps[-1].id == run.best_id
        assert [p.eval_index for p in run.history()] == list(range(1, 11))
        assert run.program(1).name == "run_1"
    with pytest.raises(optsearch.dsl.OptsearchError, match="closed"):
        run.counters


def _add(store: RunStore, text: str, fitness: float, state: float) -> int:
    pid = store.add_program(text, None, None, None, None)
    store.finish_program(pid, "ok", fitness, pid)
    store.add_evaluation(pid, TaskScore("mlp", "small", "ok", 1.0, fitness, 1.0, [0], [1.0], [1.0], [1.0], [1.0],
                                        10, 0.1, None, state), "w0")
    return pid


def _program(n: int, state: bool) -> str:
    """A program with `n` live statements, with or without one state variable."""
    lines = ["    m = interp(g, m, 0.9)", "    u = m * lr"] if state else ["    u = g * lr"]
    lines += ["    u = u * 0.5"] * (n - len(lines))
    args, ret = ("w, g, lr, m", "u, m") if state else ("w, g, lr", "u")
    return f"def p({args}):\n" + "\n".join(lines) + f"\n    return {ret}\n"


def test_hall_of_fame_is_the_pareto_front_of_fitness_against_length_and_state(tmp_path):
    store = RunStore.create(tmp_path / "run", {})
    short = _add(store, _program(1, False), -0.5, 0.0)
    _add(store, _program(2, False), -0.6, 0.0)             # longer and worse: off the front
    mid = _add(store, _program(2, True), -0.1, 1.0)
    _add(store, _program(3, True), -0.2, 1.0)              # longer and worse
    longest = _add(store, _program(4, True), 0.3, 1.0)
    front = hall_of_fame(store, "length")
    assert [(e.id, e.length) for e in front] == [(short, 1), (mid, 2), (longest, 4)]
    assert [e.state_per_param for e in front] == [0.0, 1.0, 1.0]
    assert [(e.id, e.state_per_param) for e in hall_of_fame(store, "state")] == [(short, 0.0), (longest, 1.0)]
    store.close()


def test_hall_of_fame_becomes_a_dataframe(tmp_path):
    pd = pytest.importorskip("pandas")
    with optsearch.evolve(tiny_config(6), tmp_path / "run", progress=False) as run:
        frame = run.hall_of_fame().to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert {"id", "length", "fitness", "state_per_param", "text"} <= set(frame.columns)
    assert frame["length"].is_monotonic_increasing and frame["fitness"].is_monotonic_increasing


def test_optimizer_in_process_is_the_export_and_writes_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    a, b = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    opt_a = optsearch.optimizer("lion", a.parameters(), lr=1e-2, betas=(0.8, 0.95))
    assert isinstance(opt_a, torch.optim.Optimizer)
    namespace: dict = {}
    exec(export_program(optsearch.program("lion").program), namespace)   # the module `optsearch export` writes
    opt_b = namespace["Lion"](b.parameters(), lr=1e-2, betas=(0.8, 0.95))
    x = torch.randn(16, 5)
    for _ in range(3):
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            opt.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert list(tmp_path.iterdir()) == []


def test_program_takes_text_files_zoo_names_and_run_references(tmp_path):
    text = "def momentum(w, g, lr, m):\n    m = interp(g, m, 0.9)\n    u = m * lr\n    return u, m\n"
    (tmp_path / "momentum.py").write_text(text)
    assert optsearch.program(text).text == optsearch.program(tmp_path / "momentum.py").text == text
    assert optsearch.program("lion").name == "lion" and "lion" in optsearch.zoo()
    optsearch.evolve(tiny_config(3), tmp_path / "run", progress=False).close()
    assert optsearch.program(f"{tmp_path / 'run'}#1").name == "run_1"
    with pytest.raises(optsearch.ProgramError, match="<text>:2"):
        optsearch.program("def bad(w, g, lr):\n    u = sgn(g)\n    return u\n")
    path = optsearch.program("lion").export(tmp_path / "out" / "lion_opt.py")
    assert "class Lion(Optimizer)" in path.read_text()


def test_evaluate_scores_a_program_against_adamw():
    result = optsearch.evaluate("adamw", tasks=["quadratic/small"], lr_multipliers=[1.0])
    assert result.status == "ok" and [s.task for s in result.scores] == ["quadratic"]
    bad = optsearch.evaluate("def blowup(w, g, lr):\n    u = g * 1e30\n    return u\n", tasks=["quadratic/small"])
    assert bad.status == "diverged"


@pytest.mark.slow
def test_the_walkthrough_example_runs_end_to_end(tmp_path):
    script = ROOT / "examples" / "walkthrough.py"
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "run")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "found_optimizer.py").is_file()
    losses = re.search(r"found (\S+), torch AdamW (\S+)", done.stdout)
    assert losses and all(float(v) < 1.0 for v in losses.groups())   # both trained the model


def test_progress_is_a_bar_on_a_terminal_and_resumes_where_the_run_is(tmp_path, capsys):
    optsearch.evolve(tiny_config(3), tmp_path / "run").close()
    assert "3/3" in capsys.readouterr().err
    optsearch.resume(tmp_path / "run", max_evals=5).close()
    err = capsys.readouterr().err
    assert "5/5" in err and not any(f" {n}/5 " in err for n in (0, 1, 2))   # no restart from zero


def test_code_in_a_programs_docstring_never_runs_when_its_optimizer_is_made(tmp_path, capsys):
    marker = tmp_path / "MARKER"
    payload = f"__import__('pathlib').Path({str(marker)!r}).write_text('ran') or print('EXECUTED')"
    text = (f'"""{payload}"""\n'
            f"def sneaky(w, g, lr, m):  # {payload}\n"
            f'    """Momentum SGD.\n    \\"\\"\\"\n    {payload}\n    """\n'
            f"    m = interp(m, g, 0.1)  # {payload}\n"
            f"    u = m * lr\n"
            f"    return u, m\n")
    opt = optsearch.optimizer(text, [torch.nn.Parameter(torch.ones(3))], lr=0.1)
    opt.param_groups[0]["params"][0].grad = torch.ones(3)
    opt.step()
    assert not marker.exists() and "EXECUTED" not in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.ray
def test_an_interrupted_search_on_ray_resumes_with_nothing_lost(ray_local, tmp_path):
    config = {**tiny_config(16), "executor": {"kind": "ray", "workers": 2}}
    sent = []

    def interrupt_after_three(counters):
        if counters.evaluations >= 3 and not sent:
            sent.append(counters.evaluations)
            threading.Thread(target=_thread.interrupt_main).start()

    run = optsearch.evolve(config, tmp_path / "run", progress=interrupt_after_three)
    assert run.interrupted
    before = finished_evaluations(run.path)
    run = optsearch.resume(run, progress=False)
    after = finished_evaluations(run.path)
    assert run.finished.reason == "budget" and after.keys() == set(range(1, 17))
    assert {i: after[i] for i in before} == before
    run.close()
