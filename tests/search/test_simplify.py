"""Simplification: exact rewrites reach Lion from a bloated Lion; evaluated removals and rounding
keep fitness; `optsearch simplify` prints before and after and writes a program."""
import json
import math

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from optsearch.cli import main
from optsearch.discovered import load_zoo, zoo_names
from optsearch.dsl import Const, Var, check, load_program, parse_program, print_program, structural_hash
from optsearch.evaluators import evaluate
from optsearch.search import simplify as simplify_module
from optsearch.search.equivalence import fingerprint, matches
from optsearch.search.simplify import (
    RewriteChangedBehaviour, _Rewrite, restore_names, rounding_candidates, seed_noise, simplify, simplify_static,
)
from tests.dsl.program_strategies import programs, run

BLOATED_LION = """def lion_bloated(w, g, lr, step, m, v):
    c = interp(g, m, 0.9)
    c = bias_correct(c, 0.9, step)
    update = sign(2.0 * c)
    update = sign(update)
    update = -(-update)
    unused = square(g)
    v = interp(unused, v, 0.999)
    m = interp(g, m, 0.99)
    one = 0.5 * 2.0
    decay = w * 0.01
    decay = decay * one
    update = update + decay
    update = update + 0.0
    scaled = lr * 1.0
    update = update * scaled
    update = update * 1.0
    return update, m, v
"""


def _p(body: str, params: str = "w, g, lr, m"):
    state = [p for p in params.split(", ") if p not in ("w", "g", "lr", "step")]
    lines = "".join(f"    {line}\n" for line in body.strip().splitlines())
    return parse_program(f"def f({params}):\n{lines}    return u{''.join(', ' + s for s in state)}\n")


def test_bloated_lion_simplifies_statically_to_exactly_lion():
    bloated = parse_program(BLOATED_LION)
    r = simplify(bloated, strict=True)
    lion = load_zoo("lion")
    assert matches(r.after, lion, rel_tol=0, abs_tol=0)
    assert len(r.after.body) == len(lion.body) == 6
    assert r.after.params == ("w", "g", "lr", "m")  # dead state v and the unread step are gone
    assert fingerprint(r.after)[0] == fingerprint(bloated)[0]
    assert r.fitness_before is None and r.evaluations == 0  # no tasks: nothing trained
    rules = "\n".join(r.static_steps)
    for rule in ("sign(bias_correct(x, beta, step)) = sign(x)", "sign(x * c) = sign(x)", "-(-x) = x",
                 "sign(sign(x)) = sign(x)", "constant folding", "x * 1 = x", "x + 0 = x", "dead code"):
        assert rule in rules


def test_the_result_keeps_the_authors_variable_names():
    r = simplify(parse_program(BLOATED_LION))
    assert print_program(r.after) == print_program(load_zoo("lion")).replace("def lion(", "def lion_bloated(")


# (body, params, the rule that must fire, the statement count after)
RULES = [
    ("u = g * 1.0", "w, g, lr", "x * 1 = x", 0),
    ("u = g + 0.0", "w, g, lr", "x + 0 = x", 0),
    ("u = g - 0.0", "w, g, lr", "x - 0 = x", 0),
    ("u = g / 1.0", "w, g, lr", "x / 1 = x", 0),
    ("u = g * -1.0", "w, g, lr", "x * -1 = -x", 1),
    ("u = 0.0 - g", "w, g, lr", "0 - x = -x", 1),
    ("u = power(g, 1.0)", "w, g, lr", "x ** 1 = x", 0),
    ("a = -g\nu = -a", "w, g, lr", "-(-x) = x", 0),
    ("a = sign(g)\nu = sign(a)", "w, g, lr", "sign(sign(x)) = sign(x)", 1),
    ("a = abs(g)\nu = abs(a)", "w, g, lr", "abs(abs(x)) = abs(x)", 1),
    ("a = relu(g)\nu = relu(a)", "w, g, lr", "relu(relu(x)) = relu(x)", 1),
    ("a = square(g)\nu = abs(a)", "w, g, lr", "abs(x) = x for x >= 0", 1),
    ("a = -g\nu = abs(a)", "w, g, lr", "abs(-x) = abs(x)", 1),
    ("a = -g\nu = w + a", "w, g, lr", "x + -y = x - y", 1),
    ("a = -g\nu = w - a", "w, g, lr", "x - -y = x + y", 1),
    ("u = maximum(g, g)", "w, g, lr", "maximum(x, x) = x", 0),
    ("u = interp(g, g, 0.3)", "w, g, lr", "interp(x, x, a) = x", 0),
    ("u = interp(g, w, 0.0)", "w, g, lr", "interp(x, y, 0) = x", 0),
    ("u = interp(w, g, 1.0)", "w, g, lr", "interp(x, y, 1) = y", 0),
    ("c = 0.5 * 4.0\nu = g * c", "w, g, lr", "constant folding", 1),
    ("a = g * 0.5\nu = a * 4.0", "w, g, lr", "(x * c1) * c2 = x * (c1 c2)", 1),
    ("a = sign(g)\nb = sign(g)\nu = a + b", "w, g, lr", "common subexpression", 2),
    ("a = 2.0 * g\nu = sign(a)", "w, g, lr", "sign(x * c) = sign(x)", 1),
    ("a = g * lr\nu = sign(a)", "w, g, lr", "sign(x * c) = sign(x)", 1),
    ("a = exp(w)\nb = g / a\nu = sign(b)", "w, g, lr", "sign(x / c) = sign(x)", 1),
    # Adam's denominator is positive: v is an EMA of squares, so sqrt(v) + eps > 0
    ("s = square(g)\nv = interp(s, v, 0.999)\nd = sqrt(v)\nd = d + 1e-8\nq = g / d\nu = sign(q)",
     "w, g, lr, v", "sign(x / c) = sign(x)", 1),
    ("a = bias_correct(g, 0.9, step)\nu = sign(a)", "w, g, lr, step", "sign(bias_correct(x, beta, step))", 1),
    # two moving averages toward the same value are one (Lion's momentum reached through its c)
    ("c = interp(g, m, 0.9)\nu = sign(c)\nm = interp(c, m, 0.9)", "w, g, lr, m", "interp(interp(x, y, a), y, b)", 3),
    ("c = interp(g, w, 0.5)\nu = interp(g, c, 0.5)", "w, g, lr", "interp(x, interp(x, y, a), b)", 1),
    ("a = square(g)\nu = sqrt(a)", "w, g, lr", "sqrt(square(x)) = abs(x)", 1),
    ("u = bias_correct(g, 0.784, 0.967)", "w, g, lr", "bias_correct(x, c1, c2)", 1),
    # a state returned unchanged stays at its initial 0
    ("a = g - m\nu = sign(a)", "w, g, lr, m", "state that is never updated is 0", 1),
]


@pytest.mark.parametrize("body, params, rule, after", RULES, ids=[r[2] for r in RULES])
def test_each_rule_fires_and_keeps_the_fingerprint(body, params, rule, after):
    program = _p(body, params)
    ssa, steps = simplify_static(program, strict=True)  # strict: a rule that changes behaviour raises
    assert any(rule in s for s in steps), steps
    assert fingerprint(ssa)[0] == fingerprint(program)[0]
    assert len(ssa.body) == after


@pytest.mark.parametrize("body, params", [
    ("a = -2.0 * g\nu = sign(a)", "w, g, lr"),              # a negative scale flips the sign
    ("a = g * w\nu = sign(a)", "w, g, lr"),                # w may be negative
    ("a = bias_correct(g, 1.5, step)\nu = sign(a)", "w, g, lr, step"),  # 1 - 1.5 ** step < 0
    ("a = g - w\nu = abs(a)", "w, g, lr"),
    ("u = interp(g, w, 0.5)", "w, g, lr"),
    ("a = g * 0.0\nu = w + a", "w, g, lr"),                # 0 * inf is nan: not an exact rewrite
    ("u = bias_correct(g, -0.5, 0.3)", "w, g, lr"),          # a complex power: nothing to fold
    ("u = bias_correct(g, 1.0, 2.0)", "w, g, lr"),           # 1 / 0
])
def test_rules_do_not_fire_where_they_would_change_behaviour(body, params):
    program = _p(body, params)
    ssa, steps = simplify_static(program, strict=True)
    assert steps == [] and len(ssa.body) == len(program.body)


def test_a_wrong_rule_is_caught_by_the_fingerprint(monkeypatch):
    def wrong(p, i, facts, seen):  # "sign(x) = x": plainly not exact
        if p.body[i].op == "sign":
            yield _Rewrite(i, "sign(x) = x", alias=p.body[i].args[0])

    monkeypatch.setattr(simplify_module, "_rules", wrong)
    program = _p("a = sign(g)\nu = a * lr", "w, g, lr")
    with pytest.raises(RewriteChangedBehaviour):
        simplify_static(program, strict=True)
    ssa, steps = simplify_static(program)  # in production the rewrite is skipped
    assert steps == [] and fingerprint(ssa)[0] == fingerprint(program)[0]


# Ops the rules know about, so that random programs give the rules work.
REWRITABLE = ("add", "sub", "mul", "div", "neg", "abs", "sign", "interp", "square", "sqrt", "exp", "bias_correct",
              "maximum", "power", "relu")


@given(st.one_of(programs(max_statements=8), programs(max_statements=8, ops=REWRITABLE)))
def test_static_simplification_never_changes_finite_behaviour(program):
    before = run(program, seed=3)
    assume(all(bool(torch.isfinite(u).all()) for u in before))
    ssa, _ = simplify_static(program)
    after = restore_names(ssa, program)
    check(after)
    assert len(after.body) <= len(program.body)
    for u, v in zip(before, run(after, seed=3)):
        assert torch.allclose(u, v, rtol=1e-9, atol=1e-300)


@pytest.mark.parametrize("name", zoo_names())
def test_zoo_programs_are_already_simple(name):
    program = load_zoo(name)
    ssa, steps = simplify_static(program, strict=True)
    assert steps == []
    assert restore_names(ssa, program) == program


def test_restored_names_never_overwrite_a_value_still_needed():
    # `b = a * 1.0` goes, so `u` reads the first `a` after the second is made: the second keeps its SSA name
    program = _p("a = g * 2.0\nb = a * 1.0\na = w * 3.0\nu = b + a\nu = u * lr", "w, g, lr")
    r = simplify(program, strict=True).after
    assert [s.target for s in r.body] == ["a", "x1", "u", "u"]
    assert print_program(r).splitlines()[3] == "    u = a + x1"
    assert fingerprint(r)[0] == fingerprint(program)[0]


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


def test_lion_reached_through_its_update_interpolation_simplifies_to_lion():
    # m = interp(c, m, b) with c = interp(g, m, 0.9) is m = interp(g, m, 1 - 0.1 (1 - b)): Lion at b = 0.9
    program = parse_program("""def f(w, g, lr, m):
    c = interp(g, m, 0.9)
    u = sign(c)
    d = w * 0.01
    u = u + d
    u = u * lr
    m = interp(c, m, 0.9)
    return u, m
""")
    ssa, _ = simplify_static(program, strict=True)
    assert matches(ssa, load_zoo("lion"), rel_tol=1e-9)


def test_states_returned_as_one_value_are_merged_into_one():
    # Seed 4's best in the rediscovery benchmark: m and k always hold the same value (both start at
    # 0 and both become `n`), so k is m, and n = interp(c, m, 0.9) composes to Lion's momentum.
    program = parse_program("""def f(w, g, lr, m, k):
    c = interp(g, m, 0.9)
    u = sign(c)
    d = 0.5 * w
    u = u + d
    u = u * lr
    n = interp(c, k, 0.9)
    return u, n, n
""")
    ssa, steps = simplify_static(program, strict=True)
    assert "state 'k' is always equal to 'm': merged" in steps
    assert ssa.state == ("m",)
    assert matches(ssa, load_zoo("lion_strong_wd"), rel_tol=0, abs_tol=0)  # 0.9 + 0.9 - 0.81 is 0.99 exactly


def test_states_returned_as_different_values_are_kept_apart():
    program = parse_program("""def f(w, g, lr, m, k):
    u = interp(g, m, 0.9)
    v = interp(g, k, 0.8)
    u = u + v
    u = u * lr
    return u, u, v
""")
    ssa, steps = simplify_static(program, strict=True)
    assert ssa.state == ("m", "k") and not any("always equal" in s for s in steps)


@pytest.mark.parametrize("body, after", [
    ("d = interp(0.0, w, 0.5)\nu = g + d\nu = u * lr", "d = mul(w, 0.5)"),
    ("d = interp(w, 0.0, 0.9)\nu = g + d\nu = u * lr", "d = mul(w, 0.1)"),
])
def test_an_interpolation_with_zero_is_a_scaling(body, after):
    ssa, steps = simplify_static(_p(body, "w, g, lr"), strict=True)
    muls = [s for s in ssa.body if s.op == "mul" and Var("w") in s.args]
    assert len(muls) == 1 and [a.value for a in muls[0].args if isinstance(a, Const)] == [float(after[-4:-1])]
