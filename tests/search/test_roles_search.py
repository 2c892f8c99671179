"""A search over one role's program beside fixed programs for the other roles (`roles:`)."""
import math
from pathlib import Path

import pytest

from optsearch.config import ConfigError, dump_config, load_config, parse_config
from optsearch.discovered import load_zoo
from optsearch.dsl import RoleProgram, parse_candidate, parse_program, print_candidate, print_program
from optsearch.dsl.roles import program_for, with_fixed_roles
from optsearch.evaluators import InlineExecutor, evaluate
from optsearch.run import fixed_programs
from optsearch.search.evolution import Evolution
from optsearch.search.settings import EvaluationSettings, RoleSettings, SearchSettings
from optsearch.search.store import RunStore

FAST = EvaluationSettings(tasks=("quadratic/small",), seeds=1, lr_multipliers=(0.3, 1.0), time_limit=60)
ROLES = RoleSettings(evolve=("hidden",), fixed={"default": "adamw"})
SETTINGS = SearchSettings(seed=1, population=4, tournament=2, evaluations=6, evaluation=FAST, roles=ROLES)


def test_with_fixed_roles_makes_the_candidate_and_renames_a_clashing_fixed_program():
    lion, adamw = load_zoo("lion"), load_zoo("adamw")
    c = with_fixed_roles(lion, ("hidden",), {"default": adamw})
    assert c == parse_candidate(print_candidate(c))
    assert program_for(c, "hidden") == lion and program_for(c, "vector") == adamw
    child = parse_program(print_candidate(adamw).replace("0.999", "0.99"))  # a mutated AdamW keeps its name
    c = with_fixed_roles(child, ("hidden", "head"), {"default": adamw})
    assert [p.name for p in c.programs] == ["adamw", "adamw_default"]
    assert program_for(c, "head") == child and program_for(c, "embedding").body == adamw.body
    assert with_fixed_roles(adamw, ("hidden",), {"default": adamw}).programs == (adamw,)  # the warm start
    with pytest.raises(ValueError, match="unknown role 'hiden'"):
        with_fixed_roles(lion, ("hiden",), {"default": adamw})
    with pytest.raises(ValueError, match="no program for the roles embedding, head"):
        with_fixed_roles(lion, ("hidden",), {"vector": adamw})


def test_a_search_with_roles_evolves_one_program_and_scores_it_beside_the_fixed_one(tmp_path):
    store = RunStore.create(tmp_path / "r", {"test": True})
    fixed = {"default": load_zoo("adamw")}
    outcome = Evolution(SETTINGS, store, InlineExecutor(), load_zoo("lion"), fixed=fixed).run()
    assert outcome.counters.evaluations == 6
    rows = store.programs("evaluated", order="eval_index")
    warm = rows[0]
    assert parse_program(warm.text) == load_zoo("lion")  # the store keeps the evolved program
    candidate = with_fixed_roles(load_zoo("lion"), ("hidden",), fixed)
    assert warm.fitness == evaluate(candidate, ["quadratic/small"], lr_multipliers=(0.3, 1.0)).fitness
    assert warm.fitness != evaluate(load_zoo("lion"), ["quadratic/small"], lr_multipliers=(0.3, 1.0)).fitness
    for row in rows:  # every child is a mutation of the evolved program alone: still one function
        assert not isinstance(parse_candidate(row.text), RoleProgram)
    assert all(math.isfinite(r.fitness) or r.status != "ok" for r in rows)


def test_the_fixed_programs_go_with_the_roles_setting(tmp_path):
    store = RunStore.create(tmp_path / "r", {"test": True})
    with pytest.raises(ValueError, match="give both or neither"):
        Evolution(SETTINGS, store, InlineExecutor(), load_zoo("lion"))


def test_a_roles_section_is_typed_stored_and_read_back(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("roles:\n  evolve: [hidden]\n  fixed: {default: adamw, head: lion}\nbudget: {evaluations: 5}\n")
    c = load_config(path)
    assert c.search.roles == RoleSettings(("hidden",), {"default": "adamw", "head": "lion"})
    assert fixed_programs(c) == {"default": load_zoo("adamw"), "head": load_zoo("lion")}
    again = parse_config(__import__("yaml").safe_load(dump_config(c)), "stored")
    assert again.raw == c.raw and again.search.roles == c.search.roles
    plain = tmp_path / "plain.yaml"
    plain.write_text("budget: {evaluations: 5}\n")
    assert load_config(plain).search.roles is None and "roles" not in load_config(plain).raw


@pytest.mark.parametrize("text, line, message", [
    ("roles:\n  evolve: [hiden]\n", 2, "roles.evolve.0: unknown role 'hiden' (did you mean 'hidden'?)"),
    ("roles:\n  fixed: {defualt: adamw}\n", 2, "roles.fixed.defualt: unknown role 'defualt' (did you mean 'default'?)"),
    ("roles:\n  fixed:\n    vector: adamx\n", 3, "roles.fixed.vector: no program file or zoo program named 'adamx'"),
    ("roles:\n  fixed: {vector: adamw}\n", 2, "roles.fixed: no program for the roles embedding, head"),
    ("roles:\n  evolve: [hidden]\n  fixed: {hidden: adamw, default: adamw}\n", 3,
     "roles.fixed.hidden: role 'hidden' is also in roles.evolve"),
    ("roles:\n  evolv: [hidden]\n", 2, "roles.evolv: unknown key (did you mean 'evolve'?)"),
])
def test_bad_roles_name_the_file_line_and_key(tmp_path, text, line, message):
    path = tmp_path / "run.yaml"
    path.write_text(text + "budget: {evaluations: 5}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}:{line}: ") and message in str(e.value)
    assert "\n" not in str(e.value)


def test_evolve_with_an_unknown_role_is_one_line_and_exit_2(tmp_path, capsys):
    from optsearch.cli import main

    path = tmp_path / "run.yaml"
    path.write_text("roles:\n  evolve: [hidden, output]\nbudget: {evaluations: 5}\n")
    assert main(["evolve", str(path), "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "roles.evolve.1: unknown role 'output'" in err
    assert not (tmp_path / "r").exists()


def test_a_role_candidate_as_warm_start_gives_the_evolved_roles_program(tmp_path):
    from optsearch.discovered import load_zoo_candidate
    from optsearch.run import resolve_programs

    path = tmp_path / "run.yaml"
    path.write_text("warm_start: muon_adamw\nroles: {evolve: [hidden]}\nbudget: {evaluations: 5}\n")
    warm, _ = resolve_programs(load_config(path))
    assert warm == program_for(load_zoo_candidate("muon_adamw"), "hidden")
    path.write_text("warm_start: muon_adamw\nroles: {evolve: [hidden, head], fixed: {default: adamw}}\n"
                    "budget: {evaluations: 5}\n")
    with pytest.raises(ConfigError, match=r"steps the evolved roles hidden, head with 2 programs \(adamw, muon\)"):
        resolve_programs(load_config(path))
    path.write_text("warm_start: lion_adamw\nbudget: {evaluations: 5}\n")
    with pytest.raises(ConfigError, match="is a role candidate .*; add a roles: section"):
        resolve_programs(load_config(path))
    path.write_text("budget: {evaluations: 5, target: lion_adamw}\n")
    with pytest.raises(ConfigError, match="budget.target.program: .*a role candidate"):
        load_config(path)


MUON = EvaluationSettings(tasks=("imitate_muon/small",), seeds=1, lr_multipliers=(1.0,), time_limit=60)


def test_random_search_with_roles_scores_each_draw_beside_the_fixed_programs():
    from dataclasses import replace

    from optsearch.search.random_search import random_search

    fixed = {"default": load_zoo("adamw")}
    settings = replace(SETTINGS, evaluation=MUON, evaluations=4, seed=3)
    r = random_search(settings, fixed=fixed)
    assert r.evaluations == 4 and math.isfinite(r.best_fitness)
    best = parse_program(r.best_program)
    candidate = with_fixed_roles(best, ("hidden",), fixed)
    assert r.best_fitness == evaluate(candidate, ["imitate_muon/small"], lr_multipliers=(1.0,)).fitness
    assert r.best_fitness != evaluate(best, ["imitate_muon/small"], lr_multipliers=(1.0,)).fitness
    with pytest.raises(ValueError, match="give both or neither"):
        random_search(settings)


def test_the_imitate_muon_search_matches_its_target_on_the_evolved_program(tmp_path):
    """The config's target is the hidden role's program; a run warm-started from it matches at once."""
    from dataclasses import replace

    from optsearch.config import load_config
    from optsearch.run import evolve, resolve_programs, with_overrides
    from optsearch.search.equivalence import matches

    config = load_config(Path(__file__).parents[2] / "configs" / "imitate_muon.yaml")
    warm, target = resolve_programs(config)
    assert warm == load_zoo("adamw") and target == load_zoo("muon_wd05")
    assert fixed_programs(config) == {"default": load_zoo("adamw")}
    near = parse_program(print_program(target).replace("w * 0.5", "w * 0.503"))
    far = parse_program(print_program(target).replace("w * 0.5", "w * 0.51"))
    assert matches(near, target) and not matches(far, target)
    config = with_overrides(config, max_evals=3, executor="inline")
    config = replace(config, search=replace(config.search, warm_start="muon_wd05"))
    outcome, store = evolve(config, tmp_path / "run")
    try:
        assert outcome.counters.found_at == 1 and outcome.reason == "target"
        assert parse_program(store.program(outcome.counters.found_target).text) == target
    finally:
        store.close()
