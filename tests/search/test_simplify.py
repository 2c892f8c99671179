"""Simplification: the exact rewrites (tested in tests/dsl/test_rewrite.py) keep fitness; evaluated
removals and rounding keep fitness; `optsearch simplify` prints before and after and writes a program."""
import json
import math

import pytest

from optsearch.cli import main
from optsearch.discovered import load_zoo
from optsearch.dsl import load_program, parse_program, print_program, structural_hash
from optsearch.evaluators import evaluate
from optsearch.search import simplify as simplify_module
from optsearch.search.equivalence import fingerprint, matches
from optsearch.search.simplify import rounding_candidates, seed_noise, simplify
from tests.dsl.test_rewrite import BLOATED_LION


def test_without_tasks_only_the_exact_rewrites_apply_and_nothing_is_trained():
    bloated = parse_program(BLOATED_LION)
    r = simplify(bloated, strict=True)
    assert print_program(r.after) == print_program(load_zoo("lion")).replace("def lion(", "def lion_bloated(")
    assert fingerprint(r.after)[0] == fingerprint(bloated)[0]
    assert r.fitness_before is None and r.evaluations == 0 and r.removed == [] and r.rounded == []
    assert "sign(bias_correct(x, beta, step)) = sign(x)" in "\n".join(r.static_steps)


def test_rewrites_never_change_fitness():
    bloated = parse_program(BLOATED_LION)
    after = simplify(bloated).after
    a = evaluate(bloated, ["quadratic"], seeds=[0], lr_multipliers=[0.3])
    b = evaluate(after, ["quadratic"], seeds=[0], lr_multipliers=[0.3])
    assert a.status == b.status == "ok"
    assert b.fitness == pytest.approx(a.fitness, rel=1e-6)


@pytest.mark.parametrize("c, expected", [
    (0.98999, [0.99]), (0.9873, [0.99, 0.987]), (0.999, []), (1.2345e-8, [1e-8, 1.2e-8, 1.23e-8, 1.234e-8]),
    (2.0, []), (-0.123, [-0.1, -0.12]), (0.0, []),
])
def test_rounding_candidates_are_roundest_first_betas_in_one_minus_beta(c, expected):
    assert rounding_candidates(c) == expected


LION_WITH_NOISE = """def lion_eps(w, g, lr, m):
    c = interp(g, m, 0.9)
    update = sign(c)
    m = interp(g, m, 0.98999)
    decay = w * 2.0
    update = update + decay
    tiny = g * 1e-12
    update = update + tiny
    update = update * lr
    return update, m
"""


def test_evaluated_stage_removes_what_does_not_matter_and_rounds_constants(monkeypatch):
    # `imitate` scores how closely updates follow Lion's: the epsilon-sized term does not matter,
    # every Lion statement does, and 0.98999 -> 0.99 makes the imitation exact.
    trained = []

    def counting_evaluate(program, *args, **kwargs):
        trained.append(structural_hash(program))
        return evaluate(program, *args, **kwargs)

    monkeypatch.setattr(simplify_module, "evaluate", counting_evaluate)
    lines = []
    r = simplify(parse_program(LION_WITH_NOISE), tasks=["imitate"], seeds=1, lr_multipliers=[1.0], tolerance=0.0,
                 progress=lines.append, strict=True)
    assert [s.split(":")[0] for s in r.removed] == ["line 8"]           # update + tiny
    assert r.rounded == ["line 4: 0.98999 -> 0.99 in m = interp(g, m, 0.98999)"]
    assert matches(r.after, load_zoo("lion_wd2"), rel_tol=0, abs_tol=0)   # weight decay and lr kept
    assert r.fitness_after >= r.fitness_before and r.fitness_after == pytest.approx(1.0)
    assert r.noise == 0.0
    assert len(trained) == len(set(trained)) == r.evaluations        # no canonical form trained twice
    assert any("(cached)" in line for line in lines)
    assert lines[-1].startswith("after: fitness +1.0000, 6 statements")


def test_noise_is_the_seed_spread_and_bounds_the_loss():
    r = simplify(load_zoo("lion"), tasks=["quadratic"], seeds=2, lr_multipliers=[0.1, 0.3])
    assert r.noise > 0 and math.isfinite(r.fitness_before)
    assert r.removed  # on a noisy quadratic, Lion's weight decay is not worth its statements
    assert r.fitness_after >= r.fitness_before - r.noise
    assert len(r.after.body) < 6


def test_seed_noise_of_one_seed_is_zero():
    result = evaluate(load_zoo("sgd"), ["quadratic"], seeds=[0], lr_multipliers=[1.0])
    assert seed_noise(result) == 0.0


# --- the command --------------------------------------------------------------------------

def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_prints_before_and_after_and_writes_a_parseable_program(tmp_path, capsys):
    src = tmp_path / "bloated.py"
    src.write_text(BLOATED_LION)
    out_file = tmp_path / "sub" / "simple.py"
    code, out, err = _cli(capsys, "simplify", src, "-o", out_file)
    assert code == 0 and err == ""
    assert "18 statements -> 6" in out
    before, after = out.split("\nafter:\n")
    assert "bias_correct" in before and "bias_correct" not in after.split("exact rewrites")[0]
    assert "sign(bias_correct(x, beta, step)) = sign(x)" in out
    assert f"wrote {out_file}" in out
    written = load_program(out_file)
    assert matches(written, load_zoo("lion"), rel_tol=0, abs_tol=0) and len(written.body) == 6


def test_cli_with_a_task_reports_fitness(tmp_path, capsys):
    code, out, err = _cli(capsys, "simplify", "lion_wd2", "--task", "imitate", "--seeds", "1", "--tolerance", "0",
                          "--lr-multipliers", "1", "--json")
    report = json.loads(out)
    assert code == 0
    assert report["fitness_before"] == pytest.approx(1.0) and report["fitness_after"] == pytest.approx(1.0)
    assert report["statements_after"] == 6 and report["removed"] == [] and report["evaluations"] >= 1


@pytest.mark.parametrize("argv, message", [
    (["simplify", "nonexistent_program"], "no program file or zoo program named 'nonexistent_program'"),
    (["simplify", "lion", "--task", "nope"], "unknown task 'nope'"),
    (["simplify", "lion", "--seeds", "0"], "--seeds must be >= 1"),
    (["simplify", "lion", "--tolerance", "-1"], "--tolerance must be a number >= 0"),
])
def test_cli_errors_are_one_line_exit_2(capsys, argv, message):
    code, out, err = _cli(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1 and err.startswith("optsearch: error: ")
