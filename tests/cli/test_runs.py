"""`optsearch evolve`, `resume` and `show` as a user drives them, with the inline executor."""
import json

import pytest

CONFIG = """
name: tiny
seed: 5
search: {population: 4, tournament: 2}
evaluation: {tasks: [imitate/small], lr_multipliers: [1.0]}
budget: {evaluations: 6}
executor: {kind: inline}
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(CONFIG)
    return path


def test_evolve_show_and_export_the_best(cli, config, tmp_path):
    run = tmp_path / "runs" / "tiny"
    r = cli("evolve", config, "--run-dir", run, "--quiet")
    assert r.code == 0, r.err
    assert "stopped: evaluation budget reached; 6 evaluations" in r.out
    assert (run / "run.db").is_file() and "population: 4" in (run / "config.yaml").read_text()
    best_ref = next(line.split()[5].rstrip(",") for line in r.out.splitlines() if line.startswith("best on the"))

    shown = cli("show", run, "--top", "3")
    assert shown.code == 0, shown.err
    assert "leaderboard" in shown.out and "lineage (newest first):" in shown.out and "warm start" in shown.out
    report = json.loads(cli("show", run, "--json").out)
    assert report["counts"]["evaluations"] == 6 and report["best"]["ref"] == best_ref
    assert report["lineage"][-1]["mutation"] == "warm start"
    assert 0 <= report["counts"]["cache_hit_rate"] <= 1 and report["finished"]["reason"] == "budget"
    assert "islands" not in report and "islands" not in shown.out      # one population: nothing about islands

    exported = cli("export", best_ref, "-o", tmp_path / "best.py")
    assert exported.code == 0, exported.err
    assert "class " in (tmp_path / "best.py").read_text()
    # the run exported its winner itself: the program file checks, the module defines an optimizer
    assert cli("check", run / "best.py").code == 0
    assert "torch.optim.Optimizer" in (run / "best_optimizer.py").read_text()
    assert report["winner"]["program"] == str(run / "best.py")


def test_show_plots_fitness_over_evaluations(cli, config, tmp_path):
    run = tmp_path / "run"
    assert cli("evolve", config, "--run-dir", run, "--quiet", "--max-evals", "3").code == 0
    r = cli("show", run, "--plot", tmp_path / "fit.png")
    assert r.code == 0, r.err
    assert (tmp_path / "fit.png").read_bytes()[:4] == b"\x89PNG"


def test_show_lists_the_islands_and_their_migrations(cli, tmp_path):
    config = tmp_path / "islands.yaml"
    config.write_text(CONFIG.replace("search: {population: 4, tournament: 2}",
                                     "search: {population: 4, tournament: 2, islands: {count: 2, migrate_every: 3}}"))
    run = tmp_path / "run"
    assert cli("evolve", config, "--run-dir", run, "--quiet").code == 0
    report = json.loads(cli("show", run, "--json").out)
    assert [(i["island"], i["members"]) for i in report["islands"]] == [(0, 2), (1, 2)]
    assert [m["eval_index"] for m in report["migrations"]] == [3, 6]
    shown = cli("show", run).out
    assert "islands (score: fitness less the configured penalties; 2 migrations):" in shown
    assert "migration 2 after 6 evaluations" in shown


def test_a_run_is_never_overwritten_and_resumes_with_a_bigger_budget(cli, config, tmp_path):
    run = tmp_path / "run"
    assert cli("evolve", config, "--run-dir", run, "--quiet", "--max-evals", "3").code == 0
    again = cli("evolve", config, "--run-dir", run, "--quiet")
    assert again.code == 2 and "a run already exists here; continue it with --resume" in again.err
    more = cli("resume", run, "--quiet", "--max-evals", "5")
    assert more.code == 0, more.err
    assert "5 evaluations" in more.out
    # a time budget can be set (or raised) on resume too; the run store keeps the new budget
    timed = cli("resume", run, "--quiet", "--max-evals", "6", "--seconds", "600")
    assert timed.code == 0, timed.err
    assert json.loads(cli("show", run, "--json").out)["config"]["budget"]["seconds"] == 600


def test_resume_refuses_a_changed_search(cli, config, tmp_path):
    run = tmp_path / "run"
    assert cli("evolve", config, "--run-dir", run, "--quiet", "--max-evals", "2").code == 0
    config.write_text(CONFIG.replace("population: 4", "population: 8"))
    r = cli("evolve", config, "--run-dir", run, "--resume", "--quiet")
    assert r.code == 2 and "'search' differs from the run stored at" in r.err and r.err.count("\n") == 1


@pytest.mark.parametrize("argv, message", [
    (["show", "{tmp}/nope"], "no run store at {tmp}/nope"),
    (["resume", "{tmp}/nope"], "no run store at {tmp}/nope"),
    (["evolve", "{tmp}/missing.yaml"], "{tmp}/missing.yaml: cannot read the config"),
    (["evolve", "{tmp}/tiny.yaml", "--max-evals", "0"], "--max-evals must be >= 1, got 0"),
    (["evolve", "{tmp}/tiny.yaml", "--seconds", "0"], "--seconds must be a number > 0, got 0.0"),
    (["export", "{tmp}/nope#3", "-o", "{tmp}/x.py"], "no run store at {tmp}/nope"),
])
def test_missing_runs_and_bad_arguments_are_one_line_errors(cli, config, tmp_path, argv, message):
    r = cli(*[a.format(tmp=tmp_path) for a in argv])
    assert r.code == 2
    assert message.format(tmp=tmp_path) in r.err and r.err.count("\n") == 1


def test_a_run_started_by_an_older_optsearch_resumes_with_the_search_it_began(cli, config, tmp_path):
    from optsearch.run import stored_config
    from optsearch.search.store import RunStore
    run = tmp_path / "run"
    assert cli("evolve", config, "--run-dir", run, "--quiet", "--max-evals", "3").code == 0
    with RunStore.open(run) as store:  # as a version without the `swap` mutation and `tune_share` stored it
        old = store.config
        search = {k: v for k, v in old["search"].items() if k != "tune_share"}
        search["mutations"] = {k: v for k, v in search["mutations"].items() if k != "swap"}
        store.set("config", {**old, "search": search})
    r = cli("resume", run, "--quiet", "--max-evals", "5")
    assert r.code == 0, r.err
    resumed = stored_config(run).search
    assert resumed.mutation_weights["swap"] == 0.0 and resumed.tune_share == 0.0  # still the search it began
    assert resumed.mutation_weights["wrap"] == 1.5


def test_a_run_that_finds_its_target_ships_the_match(cli, tmp_path):
    # the match, not the best fitness, is what a target run was for (here the warm start is the target)
    config = tmp_path / "target.yaml"
    config.write_text(CONFIG.replace("seed: 5", "seed: 5\nwarm_start: lion").replace(
        "budget: {evaluations: 6}", "budget: {evaluations: 6, target: {program: lion}}"))
    run = tmp_path / "run"
    r = cli("evolve", config, "--run-dir", run, "--quiet")
    assert r.code == 0, r.err
    report = json.loads(cli("show", run, "--json").out)
    assert report["winner"]["id"] == 1 and report["winner"]["basis"] == "target"
    assert "chosen as the match of the run's target" in (run / "best.py").read_text()
    assert "the match of the target" in r.out


def test_show_reports_the_cascade_and_promotion_and_the_winner_is_the_promoted_best(cli, tmp_path):
    config = tmp_path / "cascade.yaml"
    config.write_text(CONFIG.replace("search: {population: 4, tournament: 2}",
                                     "search: {population: 4, tournament: 2, promotion: {seeds: 2}}").replace(
        "lr_multipliers: [1.0]}", "lr_multipliers: [1.0], cascade: {fraction: 0.25, margin: 0.02}}"))
    run = tmp_path / "runs" / "cascade"
    r = cli("evolve", config, "--run-dir", run, "--quiet")
    assert r.code == 0, r.err
    report = json.loads(cli("show", run, "--json").out)
    k, p = report["cascade"], report["promotion"]
    assert k["fraction"] == 0.25 and k["full_evaluations"] == 6 and k["stage1_evaluations"] >= 6 + k["dropped"]
    assert p["promotions"] >= 1 and p["re_evaluations"] == p["promotions"] + p["refused"]
    assert report["winner"]["id"] == p["best_id"]
    shown = cli("show", run).out
    assert f"{k['stage1_evaluations']} first stages, 6 full evaluations, {k['dropped']} dropped" in shown
    assert f"{p['promotions']} promoted, {p['refused']} refused (lead within the noise)" in shown
