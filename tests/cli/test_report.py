"""`optsearch report`: a run's winner shipped as program, export and report, beside AdamW, Lion and Muon."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from optsearch.discovered import load_zoo
from optsearch.dsl import RoleProgram, load_candidate, load_program, parse_program, print_candidate, print_program
from optsearch.report import sign_momentum

CONFIG = """
name: tiny
seed: 2
search: {population: 4, tournament: 2}
evaluation: {tasks: [imitate/small], lr_multipliers: [0.3, 1.0]}
budget: {evaluations: 8}
funnel: {tasks: [imitate_rmsprop/small], seeds: 1, threshold: -10, top: 2}
executor: {kind: inline}
"""


def _one_step(module_file, start, lr):
    """Import an exported optimizer module, take one step from `start` with gradient 1, return the weights."""
    spec = importlib.util.spec_from_file_location(f"export_{module_file.parent.name}", module_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls = next(v for v in vars(module).values() if isinstance(v, type) and issubclass(v, torch.optim.Optimizer)
               and v is not torch.optim.Optimizer)
    w = torch.nn.Parameter(start.clone())
    opt = cls([w], lr=lr)
    w.grad = torch.ones_like(w)
    opt.step()
    return w.detach()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from optsearch.cli import main
    root = tmp_path_factory.mktemp("report")
    (root / "tiny.yaml").write_text(CONFIG)
    assert main(["evolve", str(root / "tiny.yaml"), "--run-dir", str(root / "run"), "--quiet"]) == 0
    return root / "run"


def test_report_ships_the_winner_with_a_comparison_on_held_out_tasks(cli, run, tmp_path):
    out = tmp_path / "found" / "tiny_winner"
    r = cli("report", run, "-o", out, "--seeds", "2")
    assert r.code == 0, r.err
    report = json.loads((out / "report.json").read_text())
    assert report["held_out"] == ["imitate_rmsprop/small"]    # the run's funnel tasks by default
    assert set(report["fitness"]) == {"tiny_winner", "adamw", "lion", "muon_adamw"}
    # the program file is the winner simplified exactly, named after the folder, and it checks
    program = load_program(out / "program.py")
    assert program.name == "tiny_winner" and report["program"].strip() == (out / "program.py").read_text().split(
        "\n", 1)[1].strip()
    # the export is a working optimizer
    assert not torch.equal(_one_step(out / "optimizer.py", torch.ones(3), lr=0.1), torch.ones(3))
    # the markdown says how it was found and shows every row of the comparison and the lineage
    text = (out / "REPORT.md").read_text()
    assert "Seed 2, warm start `adamw`" in text and "The run made 8 evaluations" in text
    for label in ("tiny_winner", "adamw", "lion", "muon_adamw"):
        assert f"| {label} |" in text
        assert len(report["per_seed"][label]["imitate_rmsprop/small"]) == 2
    assert report["state_per_param"]["adamw"] == 2 and report["state_per_param"]["lion"] == 1
    # the winner against each baseline and the reference, seed by seed, in words, also on the terminal
    for baseline in ("adamw", "lion", "muon_adamw", "reference"):
        assert set(report["comparisons"][baseline]) == {"imitate_rmsprop/small", "mean"}
    assert "beats muon_adamw on imitate_rmsprop/small by" in text and "**Against the best baseline here**" in text
    assert "beats lion on the mean over tasks by" in r.out
    assert "| mean | state/param |" in text and "mean less" not in text     # the run had no memory penalty
    from optsearch.display import fmt_fitness
    from optsearch.report import _markdown  # a memory-aware run's report also shows what it selected on
    aware = _markdown({**report, "memory_penalty": 0.05})
    assert "| state/param | mean less 0.05 x state |" in aware
    assert f"| 1 | {fmt_fitness(report['fitness']['lion']['mean'] - 0.05)} |" in aware
    assert "| #1 | 1 | warm start |" in text and "```yaml" in text
    assert "sign-based momentum" in r.out and "wrote" in r.out


def test_report_on_any_program_and_task(cli, run, tmp_path):
    r = cli("report", run, "--id", 1, "-o", tmp_path / "first", "--task", "imitate", "--seeds", 1,
            "--baseline", "lion")
    assert r.code == 0, r.err
    report = json.loads((tmp_path / "first" / "report.json").read_text())
    assert report["program_id"] == 1 and report["held_out"] == ["imitate/small"]
    assert set(report["fitness"]) == {"first", "lion"}
    # imitate's target is Lion: Lion imitates itself best (up to its weight decay), AdamW (the warm start) worse
    assert report["fitness"]["lion"]["mean"] > report["fitness"]["first"]["mean"]
    assert report["sign_momentum"] is False


@pytest.mark.parametrize("argv, message", [
    (["--id", "999"], "#999: no such program (the run has"),
    (["--task", "nope/small"], "--task nope/small: unknown task 'nope'"),
    (["--baseline", "nope"], "--baseline 'nope': not a zoo program"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--time-limit", "0"], "--time-limit must be a number > 0"),
    (["--jobs", "0"], "--jobs must be >= 1, got 0"),
    (["--lr-multipliers", "1", "nan"], "--lr-multipliers must be numbers > 0, got [1.0, nan]"),
])
def test_bad_requests_fail_in_one_line_before_any_work(cli, run, tmp_path, argv, message):
    r = cli("report", run, "-o", tmp_path / "out", *argv)
    assert r.code == 2 and message in r.err and len(r.err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_parallel_jobs_give_the_figures_of_one_process(cli, run, tmp_path):
    reports = []
    for jobs in (1, 2):
        r = cli("report", run, "--id", 1, "-o", tmp_path / f"jobs{jobs}" / "found", "--task", "quadratic", "--seeds", 2,
                "--lr-multipliers", 0.3, 1, "--baseline", "muon_adamw", "--jobs", jobs)
        assert r.code == 0, r.err
        reports.append(json.loads((tmp_path / f"jobs{jobs}" / "found" / "report.json").read_text()))
    one, two = reports
    for key in ("per_seed", "fitness", "standard_error", "best_lr", "comparisons", "state_per_param", "failures"):
        assert one[key] == two[key], key
    assert one["lr_multipliers"] == [0.3, 1.0] and set(one["best_lr"]["muon_adamw"]["quadratic/small"]) <= {0.3, 1.0}
    assert one["command"].endswith("--lr-multipliers 0.3 1") and two["command"].endswith("--jobs 2")


def test_a_task_that_fails_shows_its_status_not_a_number(cli, run, tmp_path):
    r = cli("report", run, "--id", 1, "-o", tmp_path / "slow", "--task", "mlp", "--seeds", 1, "--baseline", "lion",
            "--time-limit", "0.01")
    assert r.code == 0, r.err
    report = json.loads((tmp_path / "slow" / "report.json").read_text())
    assert report["failures"]["slow"] == {"mlp/small": "timeout"} and report["fitness"]["slow"]["mean"] is None
    text = (tmp_path / "slow" / "REPORT.md").read_text()
    assert "| slow | timeout | - |" in text and "- slow on mlp/small: timeout (time limit " in text
    assert "beats lion on mlp/small: no (it failed on seed 0)" in text


def test_a_missing_run_is_a_clear_error(cli, tmp_path):
    r = cli("report", tmp_path / "nothing", "-o", tmp_path / "out")
    assert r.code == 2 and "no run store at" in r.err


@pytest.mark.parametrize("name, expected", [("lion", True), ("signum", True), ("lion_strong_wd", True),
                                            ("adamw", False), ("signsgd", False), ("rmsprop", False)])
def test_sign_momentum_is_the_sign_of_a_value_that_reads_state(name, expected):
    assert sign_momentum(load_zoo(name)).found is expected


def test_a_dead_sign_of_momentum_does_not_count():
    program = parse_program("""def f(w, g, lr, m):
    s = sign(m)
    m = interp(g, m, 0.9)
    u = m * lr
    return u, m""", validate=False)
    assert sign_momentum(program).found is False


FOUND = sorted((Path(__file__).resolve().parents[2] / "discovered" / "found").glob("*/program.py"))


@pytest.mark.parametrize("program_file", FOUND, ids=[p.parent.name for p in FOUND])
def test_every_shipped_find_checks_exports_and_matches_its_report(program_file):
    folder = program_file.parent
    candidate = load_candidate(program_file)   # a program, or with roles the evolved one beside fixed ones
    report = json.loads((folder / "report.json").read_text())
    assert report["program"].strip() == print_candidate(candidate).strip()
    evolved = candidate.programs[0] if isinstance(candidate, RoleProgram) else candidate
    assert sign_momentum(evolved).found is report["sign_momentum"]
    start = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(_one_step(folder / "optimizer.py", start, lr=1e-3)).all()
    assert "## Against the baselines where the search did not look" in (folder / "REPORT.md").read_text()


@pytest.mark.parametrize("program_file", FOUND, ids=[p.parent.name for p in FOUND])
def test_every_shipped_find_holds_the_current_export_of_its_program(program_file):
    from optsearch.dsl.export.roles import export_candidate
    assert (program_file.parent / "optimizer.py").read_text() == export_candidate(load_candidate(program_file))


def test_every_shipped_report_regenerates_byte_identical_from_its_json():
    from optsearch.report import _markdown

    found = sorted((Path(__file__).resolve().parents[2] / "discovered" / "found").iterdir())
    assert found
    for folder in found:
        report = json.loads((folder / "report.json").read_text())
        assert _markdown(report) == (folder / "REPORT.md").read_text(), folder.name
