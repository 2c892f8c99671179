"""Run configs: defaults, and one clear line naming file, line and key for every bad input."""
from pathlib import Path

import pytest

from optsearch.config import ConfigError, ExecutorSettings, dump_config, load_config, parse_config
from optsearch.evaluators import SubspaceOptions
from optsearch.run import with_overrides
from optsearch.search.checks import section_fields
from optsearch.search.settings import (
    DEFAULT_MUTATION_WEIGHTS, BudgetSettings, CascadeSettings, EvaluationSettings, EvolutionSettings, FunnelSettings,
    IslandSettings, PromotionSettings, SearchSettings, Target,
)

GOOD = """\
name: demo
seed: 3
warm_start: adamw
search:
  population: 16
  tournament: 4
  mutations: {wrap: 3, split: 0}
evaluation:
  tasks: [imitate/small, mlp]
  lr_multipliers: [0.3, 1, 3e-1]
budget:
  evaluations: 100
  target: lion
executor:
  kind: inline
"""


def _write(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_good_config_is_typed_and_defaults_are_filled(tmp_path):
    c = load_config(_write(tmp_path, GOOD))
    s = c.search
    assert c.name == "demo" and s.seed == 3 and s.population == 16 and s.tournament == 4
    assert s.evaluation.tasks == ("imitate/small", "mlp/small")
    assert s.evaluation.lr_multipliers == (0.3, 1.0, 0.3)  # YAML's 3e-1 is a string; accepted as a number
    assert s.mutation_weights == {**DEFAULT_MUTATION_WEIGHTS, "wrap": 3.0, "split": 0.0}
    assert s.target.program == "lion" and s.target.rel_tol == 0.01
    assert c.executor.kind == "inline" and s.max_statements == 24
    again = parse_config(__import__("yaml").safe_load(dump_config(c)), "stored")
    assert again.search == s and again.executor == c.executor  # the stored config rebuilds the run


def test_the_name_defaults_to_the_file_stem(tmp_path):
    assert load_config(_write(tmp_path, "budget: {evaluations: 5}\n", "night_run.yaml")).name == "night_run"


@pytest.mark.parametrize("text, line, message", [
    ("search:\n  populaton: 8\n", 2, "search.populaton: unknown key (did you mean 'population'?)"),
    ("search:\n  population: many\n", 2, "search.population: must be an integer >= 2 and <= 100000, got 'many'"),
    ("search:\n  population: 4\n  tournament: 8\n", 3, "search.tournament: must be <= search.population (4), got 8"),
    ("evaluation:\n  tasks: [imitate/small, lmm]\n", 2, "evaluation.tasks.1: unknown task 'lmm' (did you mean 'lm'?)"),
    ("evaluation:\n  tasks:\n    - mlp/huge\n", 3, "evaluation.tasks.0: task 'mlp' has sizes small, medium, large, got 'huge'"),
    ("evaluation:\n  lr_multipliers: [1, -2]\n", 2, "evaluation.lr_multipliers.1: must be a number > 0, got -2"),
    ("search:\n  mutations: {wrapp: 1}\n", 2, "search.mutations.wrapp: unknown key (did you mean 'wrap'?)"),
    ("warm_start: adamx\n", 1, "warm_start: no program file or zoo program named 'adamx'"),
    ("executor:\n  kind: slurm\n", 2, "executor.kind: must be one of inline, ray, got 'slurm'"),
    ("budget: {evaluations: null}\n", 1, "budget: needs a limit"),
    ("search: [1, 2]\n", 1, "search: must be a mapping, got [1, 2]"),
    ("seed: 1\nseed_typo: 2\n", 2, "seed_typo: unknown key"),
    ("search:\n  population: 8\n   tournament: 2\n", 3, "not valid YAML"),
    ("search:\n  restart_from: scratch\n", 2, "search.restart_from: must be one of best, warm_start, got 'scratch'"),
    ("search:\n  simplify_children: yes please\n", 2, "search.simplify_children: must be true or false"),
    ("evaluation:\n  cascade: {fraction: 1}\n", 2, "evaluation.cascade.fraction: must be < 1 (1 is no cascade"),
    ("evaluation:\n  cascade: {margin: -0.1}\n", 2, "evaluation.cascade.margin: must be a number >= 0, got -0.1"),
    ("search:\n  promotion: {seeds: 1}\n", 2, "search.promotion.seeds: must be an integer >= 2"),
    ("search:\n  islands: {count: 0}\n", 2, "search.islands.count: must be an integer >= 1, got 0"),
    ("search:\n  population: 64\n  islands: {count: 5}\n", 3,
     "search.islands.count: must divide search.population (64) into equal islands, got 5"),
    ("search:\n  population: 16\n  tournament: 8\n  islands: {count: 4}\n", 3,
     "search.tournament: must be <= the island size (search.population 16 / 4 islands = 4), got 8"),
    ("search:\n  population: 16\n  tournament: 2\n  islands: {count: 2, migrants: 8}\n", 4,
     "search.islands.migrants: must be < the island size (8), got 8"),
])
def test_bad_configs_name_the_file_line_and_key(tmp_path, text, line, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}:{line}: ")
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_an_unreadable_config_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"missing.yaml: cannot read the config: No such file"):
        load_config(tmp_path / "missing.yaml")


def test_a_warm_start_file_is_found_next_to_the_config(tmp_path):
    (tmp_path / "start.py").write_text("def start(w, g, lr):\n    u = g * lr\n    return u\n")
    c = load_config(_write(tmp_path, "warm_start: start.py\n"))
    assert c.search.warm_start == str(tmp_path / "start.py")


def test_a_search_can_run_every_candidate_in_a_subspace(tmp_path):
    c = load_config(_write(tmp_path, "evaluation:\n  subspace: {rank: 4, projection: svd, update_every: 50}\n"))
    assert c.search.evaluation.subspace == SubspaceOptions(4, "svd", 50, None)
    assert c.raw["evaluation"]["subspace"] == {"rank": 4, "projection": "svd", "update_every": 50, "lr": None}
    again = parse_config(__import__("yaml").safe_load(dump_config(c)), "stored")
    assert again.search.evaluation.subspace == SubspaceOptions(4, "svd", 50, None)
    assert load_config(_write(tmp_path, "evaluation:\n  subspace: {rank: 0, projection: svd}\n")).search.evaluation.subspace is None
    with pytest.raises(ConfigError, match="evaluation.subspace.projection: must be one of online, svd"):
        load_config(_write(tmp_path, "evaluation:\n  subspace: {rank: 4, projection: galore}\n"))


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[2] / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path):
    config = load_config(path)
    assert config.name == path.stem


@pytest.mark.parametrize("cls", [EvolutionSettings, BudgetSettings, SearchSettings, EvaluationSettings, FunnelSettings,
                                 IslandSettings, Target, ExecutorSettings, CascadeSettings, PromotionSettings])
def test_every_config_field_declares_its_check(cls):
    # a field without a check could not be read from a file: every section is read field by field
    assert section_fields(cls) and all(callable(f.metadata.get("check")) for f in section_fields(cls))


def test_the_stored_form_is_derived_from_the_typed_config(tmp_path):
    c = with_overrides(load_config(_write(tmp_path, GOOD)), max_evals=7, executor="ray", workers=3, seconds=9.5)
    assert c.search.evaluations == 7 and c.executor.workers == 3
    assert c.raw["budget"] == {"evaluations": 7, "seconds": 9.5, "stop_fitness": None,
                               "target": {"program": "lion", "rel_tol": 0.01, "abs_tol": 0.0}}
    assert c.raw["executor"]["kind"] == "ray" and c.raw["executor"]["workers"] == 3
    assert list(c.raw) == ["name", "seed", "warm_start", "search", "evaluation", "budget", "executor", "funnel"]
    assert c.raw["search"]["mutations"]["wrap"] == 3.0 and c.raw["evaluation"]["tasks"] == ["imitate/small", "mlp/small"]
    again = parse_config(c.raw, "stored")
    assert again.search == c.search and again.executor == c.executor and again.raw == c.raw
