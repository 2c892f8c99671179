"""Exact rewrites (dsl/rules.py, dsl/rewrite.py): each rule of the table fires where it should and
nowhere else, a bloated Lion rewrites to exactly Lion, rewrites never change what a program computes,
and the algebraic facts on each op that the rules read are sound."""
import itertools
import subprocess
import sys

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from optsearch.discovered import load_zoo, zoo_names
from optsearch.dsl import OPS, Const, FlatReducer, Layout, Var, check, parse_program, print_program, structural_hash
from optsearch.dsl.rewrite import RewriteChangedBehaviour, behaviour, restore_names, simplify_static
from optsearch.dsl.rules import RULES, Rule
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



def _exact(program):
    """`program` rewritten exactly, with its own variable names back."""
    ssa, steps = simplify_static(program, strict=True)
    return restore_names(ssa, program), steps


def test_bloated_lion_simplifies_statically_to_exactly_lion():
    bloated = parse_program(BLOATED_LION)
    after, steps = _exact(bloated)
    lion = load_zoo("lion")
    assert structural_hash(after) == structural_hash(lion)
    assert len(after.body) == len(lion.body) == 6
    assert after.params == ("w", "g", "lr", "m")  # dead state v and the unread step are gone
    assert torch.allclose(behaviour(after), behaviour(bloated), rtol=1e-12, atol=0)
    rules = "\n".join(steps)
    for rule in ("sign(bias_correct(x, beta, step)) = sign(x)", "sign(x * c) = sign(x)", "-(-x) = x",
                 "sign(sign(x)) = sign(x)", "constant folding", "x * 1 = x", "x + 0 = x", "dead code"):
        assert rule in rules


def test_the_result_keeps_the_authors_variable_names():
    after, _ = _exact(parse_program(BLOATED_LION))
    assert print_program(after) == print_program(load_zoo("lion")).replace("def lion(", "def lion_bloated(")


# (body, params, the rule that must fire, the statement count after)
RULES_FIRING = [
    ("u = g * 1.0", "w, g, lr", "x * 1 = x", 0),
    ("u = g + 0.0", "w, g, lr", "x + 0 = x", 0),
    ("u = g - 0.0", "w, g, lr", "x - 0 = x", 0),
    ("u = g / 1.0", "w, g, lr", "x / 1 = x", 0),
    ("u = g * -1.0", "w, g, lr", "x * -1 = -x", 1),
    ("u = g / -1.0", "w, g, lr", "x / -1 = -x", 1),
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
    ("u = interp(0.0, g, 0.5)", "w, g, lr", "interp(0, y, b) = y * b", 1),
    ("u = interp(g, 0.0, 0.9)", "w, g, lr", "interp(x, 0, b) = x * (1 - b)", 1),
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
    # matrix ops: a positive scalar factor cancels in orthogonalize when eps is 0; rows and cols are w's
    ("a = g * lr\nu = orthogonalize(a, 1.5, -0.5, 0.0, 5.0, 0.0)", "w, g, lr",
     "orthogonalize(x * c) = orthogonalize(x)", 1),
    ("n = rms(g)\nn = n + 0.5\na = g / n\nu = orthogonalize(a, 3.4445, -4.775, 2.0315, 5.0, 0.0)", "w, g, lr",
     "orthogonalize(x / c) = orthogonalize(x)", 1),
    ("u = orthogonalize(g, 3.4445, -4.775, 2.0315, 5.0, -1.0)", "w, g, lr", "orthogonalize's eps < 0 acts as 0", 1),
    ("u = orthogonalize(g, 3.4445, -4.775, 2.0315, 4.6, 0.0)", "w, g, lr",
     "orthogonalize's steps are rounded and clamped", 1),
    ("r = rows(g)\nc = cols(m)\nq = r / c\nu = g * q", "w, g, lr, m", "rows(x) = rows(w)", 4),
    ("r = rows(w)\nc = cols(m)\nq = r / c\nu = g * q", "w, g, lr, m", "cols(x) = cols(w)", 4),
    ("r = rows(w)\ns = rows(g)\nq = r / s\nu = g * q", "w, g, lr", "common subexpression", 3),
    # a state returned unchanged stays at its initial 0
    ("a = g - m\nu = sign(a)", "w, g, lr, m", "state that is never updated is 0", 1),
]


@pytest.mark.parametrize("body, params, rule, after", RULES_FIRING, ids=[r[2] for r in RULES_FIRING])
def test_each_rule_fires_and_keeps_behaviour(body, params, rule, after):
    program = _p(body, params)
    ssa, steps = simplify_static(program, strict=True)  # strict: a rule that changes behaviour raises
    assert any(rule in s for s in steps), steps
    assert torch.allclose(behaviour(ssa), behaviour(program), rtol=1e-9, atol=0)
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
    # eps > 0: a factor changes the result where |x|_F or |c x|_F is below eps
    ("a = g * lr\nu = orthogonalize(a, 1.5, -0.5, 0.0, 5.0, 1e-07)", "w, g, lr"),
    ("a = g * w\nu = orthogonalize(a, 1.5, -0.5, 0.0, 5.0, 0.0)", "w, g, lr"),    # not a scalar
    ("a = g * -2.0\nu = orthogonalize(a, 1.5, -0.5, 0.0, 5.0, 0.0)", "w, g, lr"),  # a negative factor
    ("a = sqrt(g)\nb = g * a\nu = orthogonalize(b, 1.5, -0.5, 0.0, 5.0, 0.0)", "w, g, lr"),
])
def test_rules_do_not_fire_where_they_would_change_behaviour(body, params):
    program = _p(body, params)
    ssa, steps = simplify_static(program, strict=True)
    assert steps == [] and len(ssa.body) == len(program.body)


def test_every_rule_of_the_table_is_exercised_above():
    fired = {rule for _, _, rule, _ in RULES_FIRING}
    for r in RULES:
        assert any(r.name.replace("{op}", op) in f or f in r.name.replace("{op}", op)
                   for f in fired for op in (r.ops or OPS)), f"no test makes rule {r.name!r} fire"


def test_a_wrong_rule_is_caught_by_the_probe():
    wrong = Rule("sign(x) = x", frozenset({"sign"}), lambda site: iter([site.args[0]]))  # plainly not exact
    program = _p("a = sign(g)\nu = a * lr", "w, g, lr")
    with pytest.raises(RewriteChangedBehaviour):
        simplify_static(program, strict=True, rules=[wrong])
    ssa, steps = simplify_static(program, rules=[wrong])  # in production the rewrite is skipped
    assert steps == [] and torch.equal(behaviour(ssa), behaviour(program))


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
    r, _ = _exact(program)
    assert [s.target for s in r.body] == ["a", "x1", "u", "u"]
    assert print_program(r).splitlines()[3] == "    u = a + x1"
    assert torch.allclose(behaviour(r), behaviour(program), rtol=1e-12, atol=0)


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
    assert structural_hash(ssa) == structural_hash(load_zoo("lion"))


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
    assert structural_hash(ssa) == structural_hash(load_zoo("lion_strong_wd"))  # 0.9 + 0.9 - 0.81 is 0.99 exactly


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


# --- the algebraic facts on each op --------------------------------------------------------

_LAYOUT = Layout([torch.Size([4, 6])])


def _apply_op(name: str, args: list[torch.Tensor]) -> torch.Tensor:
    """`name` on float64 tensors of 24 elements (one 4 x 6 parameter, a batch of 50 copies)."""
    op = OPS[name]
    if op.elementwise:
        return op.impl(*args)
    return op.impl(FlatReducer(_LAYOUT, torch.float64), *args)


def _values(sign, gen: torch.Generator, const: float | None) -> torch.Tensor:
    """Random values that have `sign`: > 0, >= 0 (a third exactly 0), or anything; of moderate size, since
    "positive" means positive where finite and not underflowed (`exp(-1000)` is 0)."""
    if const is not None:
        return torch.full((50, 24), const, dtype=torch.float64)
    x = torch.randn(50, 24, generator=gen, dtype=torch.float64) * torch.logspace(-2, 1, 24, dtype=torch.float64)
    if sign == "positive":
        return x.abs() + 1e-2
    if sign == "nonneg":
        return torch.where(torch.rand(50, 24, generator=gen) < 0.3, torch.zeros_like(x), x.abs())
    return x


# Constants the sign rules read (an interpolation weight, a beta, a step), beside variables.
_CONSTANTS = {("interp", 2): (0.0, 0.3, 1.0, 1.5), ("bias_correct", 1): (0.9, 1.5), ("bias_correct", 2): (3.0,)}


@pytest.mark.parametrize("name", sorted(n for n, op in OPS.items() if op.sign is not None))
def test_every_sign_fact_holds_on_random_values(name):
    op, gen, checked = OPS[name], torch.Generator().manual_seed(0), 0
    for signs in itertools.product(("positive", "nonneg", None), repeat=op.arity):
        choices = [(None,) + _CONSTANTS.get((name, k), ()) for k in range(op.arity)]
        for consts in itertools.product(*choices):
            claimed = op.result_sign(signs, consts)
            if claimed is None:
                continue
            r = _apply_op(name, [_values(s, gen, c) for s, c in zip(signs, consts)])
            finite = torch.isfinite(r)
            ok = (r > 0) if claimed == "positive" else (r >= 0)
            assert bool((ok | ~finite).all()), f"{name}{signs} with constants {consts} is not {claimed}"
            checked += 1
    assert checked, f"no argument signs make {name} positive or non-negative"


@pytest.mark.parametrize("name", sorted(n for n, op in OPS.items() if op.linear))
def test_every_linearity_fact_holds_on_random_values(name):
    # affine in a group: f(x + y) = f(x) + f(y) - f(0) over the group, the other arguments fixed
    op, gen = OPS[name], torch.Generator().manual_seed(1)
    fixed = [torch.rand(50, 24, generator=gen, dtype=torch.float64) * 0.5 + 0.25 for _ in range(op.arity)]
    if name == "bias_correct":
        fixed[2] = torch.full((50, 24), 3.0, dtype=torch.float64)
    for group in op.linear:
        x, y = ([torch.randn(50, 24, generator=gen, dtype=torch.float64) for _ in group] for _ in range(2))

        def f(values):
            args = list(fixed)
            for k, v in zip(group, values):
                args[k] = v
            return _apply_op(name, args)

        zero = [torch.zeros(50, 24, dtype=torch.float64) for _ in group]
        lhs = f([a + b for a, b in zip(x, y)])
        assert torch.allclose(lhs, f(x) + f(y) - f(zero), rtol=1e-9, atol=1e-12), f"{name} is not affine in {group}"
        assert op.affine_in([k in group for k in range(op.arity)])


def test_affine_in_asks_that_scales_are_scalars_only_where_they_scale():
    mul, add, interp = OPS["mul"], OPS["add"], OPS["interp"]
    assert mul.affine_in([True, False]) and not mul.affine_in([True, True])
    assert mul.affine_in([True, False], scalar=[False, True]) and not mul.affine_in([True, False], scalar=[True, False])
    assert add.affine_in([True, False], scalar=[False, False])      # a tensor added is no scale
    assert interp.affine_in([True, True, False]) and not interp.affine_in([False, False, True])
    assert not interp.affine_in([True, False, False], scalar=[True, True, False])
    assert not OPS["sign"].affine_in([True]) and not OPS["tanh"].affine_in([True])


def test_the_rewrite_engine_needs_nothing_above_the_language():
    code = ("import sys, optsearch.dsl.rewrite\n"
            "print(sorted(m for m in sys.modules if m.startswith('optsearch.') and not m.startswith('optsearch.dsl')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
