"""`optsearch eval` and `export` take a role candidate (one program per parameter role); the other
commands say plainly that they take a single program."""
import json

import pytest
import torch

from optsearch.discovered import load_zoo, zoo_path

ROLE_FILE = zoo_path("lion_adamw")


def test_eval_trains_a_role_candidate_by_zoo_name_and_reports_its_roles(cli):
    r = cli("eval", "lion_adamw", "--task", "quadratic", "--lr-multipliers", "1", "--json")
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["program"] == "lion_adamw" and report["status"] == "ok"
    assert report["roles"] == {"hidden": "lion", "embedding": "adamw", "head": "adamw", "vector": "adamw"}
    assert report["state_per_param"] == pytest.approx(1.5)


def test_eval_of_a_role_candidate_file_prints_the_roles_and_the_lr_rule(cli, tmp_path):
    path = tmp_path / "sgd_adamw.py"
    path.write_text(ROLE_FILE.read_text().replace("def lion(", "def sgd(").replace('"hidden": lion', '"hidden": sgd'))
    r = cli("eval", path, "--task", "quadratic", "--lr-multipliers", "0.3")
    assert r.code == 0, r.err
    assert "roles: hidden: sgd, embedding: adamw, head: adamw, vector: adamw (the lr multiplier scales every" in r.out


@pytest.mark.parametrize("command", ["check", "simplify"])
def test_commands_that_take_one_program_refuse_a_role_candidate_in_one_line(cli, command):
    r = cli(command, "lion_adamw")
    assert r.code == 2 and r.err.count("\n") == 1
    assert f"{ROLE_FILE}:31: a role candidate (hidden: lion, embedding: adamw" in r.err
    assert "only `optsearch eval` and `export` take one" in r.err


def test_eval_refuses_a_subspace_around_a_role_candidate(cli):
    r = cli("eval", "lion_adamw", "--subspace-rank", "4")
    assert r.code == 2 and "a role candidate cannot be combined with it yet" in r.err


def test_plain_zoo_programs_still_resolve_as_programs(cli):
    r = cli("check", "lion", "--json")
    assert r.code == 0 and json.loads(r.out)["name"] == load_zoo("lion").name


def test_export_of_a_role_candidate_writes_one_optimizer_with_a_program_per_role(cli, tmp_path):
    out = tmp_path / "mixed.py"
    r = cli("export", "lion_adamw", "-o", out)
    assert r.code == 0, r.err
    assert f"wrote {out} (class LionAdamw, one program per role: hidden: lion, embedding: adamw" in r.out
    namespace: dict = {}
    exec(compile(out.read_text(), str(out), "exec"), namespace)
    w, b = torch.nn.Parameter(torch.ones(3, 2)), torch.nn.Parameter(torch.ones(2))
    opt = namespace["LionAdamw"]([w, b], lr=0.1, lion_weight_decay=0.0, adamw_weight_decay=0.0)
    w.grad, b.grad = torch.full((3, 2), 0.5), torch.full((2,), 0.5)
    opt.step()
    assert torch.allclose(w, torch.full((3, 2), 0.9)) and torch.allclose(b, torch.full((2,), 0.9))
    assert set(opt.state[w]) == {"step", "m"} and set(opt.state[b]) == {"step", "m", "v"}  # Lion, AdamW


@pytest.mark.parametrize("option", [["--distributed"], ["--subspace-rank", "4"]])
def test_export_refuses_a_transform_around_a_role_candidate_in_one_line(cli, tmp_path, option):
    r = cli("export", "lion_adamw", "-o", tmp_path / "x.py", *option)
    assert r.code == 2 and r.err.count("\n") == 1
    assert "take a single program, not a role candidate (hidden: lion" in r.err
    assert not (tmp_path / "x.py").exists()


ROLES_RUN = """
name: roles
seed: 1
warm_start: lion
roles: {evolve: [hidden], fixed: {default: adamw}}
search: {population: 3, tournament: 2}
evaluation: {tasks: [quadratic/small], lr_multipliers: [0.3, 1.0]}
budget: {evaluations: 4}
executor: {kind: inline}
"""


def test_a_run_with_roles_is_read_back_as_its_candidates(cli, tmp_path):
    (tmp_path / "roles.yaml").write_text(ROLES_RUN)
    run = tmp_path / "run"
    r = cli("evolve", tmp_path / "roles.yaml", "--run-dir", run, "--quiet")
    assert r.code == 0, r.err
    # eval and export take the candidate the run trained; check and simplify the evolved program
    r = cli("eval", f"{run}#1", "--task", "quadratic", "--lr-multipliers", "0.3", "1", "--json")
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["roles"]["hidden"] == "run_1" and report["roles"]["vector"] == "adamw"
    assert cli("check", f"{run}#1").code == 0
    out = tmp_path / "found"
    r = cli("report", run, "--id", "1", "-o", out, "--seeds", "1", "--task", "quadratic")
    assert r.code == 0, r.err
    text = (out / "program.py").read_text()
    assert 'roles = {"hidden": found, "default": adamw}' in text
    assert "_split_by_program(" in (out / "optimizer.py").read_text()
    assert "roles: it steps hidden; fixed programs step the rest (default: adamw)" in cli("show", run).out
    assert 'roles = {"hidden": run_' in (run / "best.py").read_text()  # the winner, as trained
    assert "_split_by_program(" in (run / "best_optimizer.py").read_text()
