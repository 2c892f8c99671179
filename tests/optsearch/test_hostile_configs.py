"""Configs written to hurt: each is one line naming the file (and line), exit 2, nothing on disk."""
import signal
import tracemalloc

import pytest

from optsearch.cli import main
from optsearch.config import ConfigError, load_config

RUNNABLE = """\
name: {name}
evaluation: {{tasks: [quadratic/small], lr_multipliers: [1.0]}}
budget: {{evaluations: 1}}
executor: {{kind: inline}}
"""


def _bomb(levels: int = 9, width: int = 9) -> str:
    """`levels` nested lists of `width` aliases each, all inside `name`: width**levels values."""
    lines = ["name:", "  - &l0 [" + ", ".join(["lol"] * width) + "]"]
    for k in range(1, levels):
        lines.append(f"  - &l{k} [" + ", ".join([f"*l{k - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


class _Watchdog:
    """Raises `TimeoutError` in this thread after `seconds` (a hang fails the test, not the suite)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __enter__(self):
        def expire(signum, frame):
            raise TimeoutError(f"still running after {self.seconds} s")
        self.previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous)


def test_an_alias_bomb_is_refused_fast_and_small(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb())
    tracemalloc.start()
    try:
        with _Watchdog(5.0), pytest.raises(ConfigError) as e:
            load_config(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(e.value)
    assert message.startswith(f"{path}:") and "alias" in message and "\n" not in message and len(message) < 300
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_a_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("name: &a [*a]\n")
    with _Watchdog(5.0), pytest.raises(ConfigError, match=rf"^{path}:1: .*alias"):
        load_config(path)


def test_a_few_aliases_still_work(tmp_path):
    path = tmp_path / "aliases.yaml"
    path.write_text("evaluation: {tasks: &t [mlp/small]}\nfunnel: {tasks: *t}\nbudget: {evaluations: 5}\n")
    c = load_config(path)
    assert c.search.evaluation.tasks == c.search.funnel.tasks == ("mlp/small",)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_an_empty_config_is_refused(tmp_path, text):
    path = tmp_path / "truncated.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^{path}: the config is empty"):
        load_config(path)


@pytest.mark.parametrize("key, value, line", [
    ("search", "{population: 1000000000000}", "search.population: must be an integer >= 2 and <= 100000"),
    ("evaluation", "{seeds: 1000000000000}", "evaluation.seeds: must be an integer >= 1 and <= 1000"),
    ("funnel", "{seeds: 1000000000000}", "funnel.seeds: must be an integer >= 1 and <= 1000"),
    ("executor", "{workers: 1000000000000}", "executor.workers: must be an integer >= 1 and <= 10000 or null"),
    ("executor", "{threads_per_worker: 1000000000000}", "executor.threads_per_worker: must be an integer >= 1 and <= 1024"),
])
def test_sizes_beyond_what_the_engine_can_run_are_refused(tmp_path, key, value, line):
    path = tmp_path / "huge.yaml"
    path.write_text(f"budget: {{evaluations: 5}}\n{key}: {value}\n")
    with pytest.raises(ConfigError, match=rf"^{path}:2: {line}, got 1000000000000$"):
        load_config(path)


@pytest.mark.parametrize("name", ["{outside}/victim", "../../victim", "..", "runs/../../victim", "a//b", "./x"])
def test_a_run_name_cannot_leave_runs(tmp_path, monkeypatch, capsys, name):
    work = tmp_path / "work" / "deep"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    path = work / "escape.yaml"
    path.write_text(RUNNABLE.format(name=name.format(outside=tmp_path / "elsewhere")))
    assert main(["evolve", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"optsearch: error: {path}:1: name: must be a run name") and "\n" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deep", "escape.yaml", "work"]  # nothing made


def test_a_run_name_may_group_runs_in_folders(tmp_path):
    path = tmp_path / "grouped.yaml"
    path.write_text(RUNNABLE.format(name="ablation/seed_1"))
    assert load_config(path).name == "ablation/seed_1"
