"""Mutations: valid children, reproducible draws, and the moves that lead from AdamW to Lion."""
import math
import random

import pytest
import torch

from optsearch.discovered import load_zoo, zoo_names
from optsearch.dsl import (Const, ProgramOptimizer, Var, canonicalize, check, parse_program, print_program,
                           structural_hash)
from optsearch.search.equivalence import matches
from optsearch.search.mutate import MUTATIONS, _Draft, mutate, neighbours, perturb_value, to_ssa
from optsearch.search.settings import DEFAULT_MUTATION_WEIGHTS


def _updates(program, steps=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    w = [torch.randn(5, 3, generator=gen, dtype=torch.float64), torch.randn(4, generator=gen, dtype=torch.float64)]
    opt = ProgramOptimizer(program, w)
    out = []
    for _ in range(steps):
        before = [p.clone() for p in w]
        opt.step([torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in w], 1e-2)
        out += [b - p for b, p in zip(before, w)]
    return out


@pytest.mark.parametrize("name", zoo_names())
def test_ssa_form_computes_the_same_updates(name):
    p = load_zoo(name)
    ssa = to_ssa(p)
    targets = [s.target for s in ssa.body]
    assert len(targets) == len(set(targets)) and not set(targets) & set(ssa.params)
    for a, b in zip(_updates(p), _updates(ssa)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_each_mutation_makes_parseable_children_that_differ(mutation):
    rng = random.Random(1)
    parent = canonicalize(load_zoo("adamw"))
    applied = valid = 0
    for _ in range(60):
        drawn = mutate(parent, rng, {mutation: 1.0})
        if drawn is None:
            continue
        child, name = drawn
        assert name == mutation
        applied += 1
        text = print_program(child)
        assert print_program(parse_program(text, validate=False)) == text  # the store keeps text
        try:
            check(child)
        except Exception:
            continue
        valid += 1
        if mutation != "split":  # a split alone is neutral on purpose (the search mutates again)
            assert child != parent
    assert applied >= 30 and valid >= 15, (applied, valid)


def test_mutation_draws_are_reproducible():
    parent = load_zoo("adamw")
    runs = []
    for _ in range(2):
        rng = random.Random(7)
        runs.append([mutate(parent, rng, DEFAULT_MUTATION_WEIGHTS) for _ in range(40)])
    assert runs[0] == runs[1]


def test_wrap_applies_an_op_in_place_for_every_later_use():
    parent = to_ssa(load_zoo("signum"))  # x1 = interp(g, m, 0.9); update = sign(x1); ...; return ..., x1
    # Wrapping the new momentum with abs: every later read of it, the returned state included, reads abs.
    for seed in range(3000):
        d = _Draft.of(parent)
        rng = random.Random(seed)
        if MUTATIONS["wrap"](rng, d) and d.body[1].op == "abs" and d.body[1].args[0].name == d.body[0].target:
            break
    else:
        pytest.fail("wrap never wrapped the momentum in 3000 draws")
    assert [s.op for s in d.body] == ["interp", "abs", "sign", "mul"]
    assert d.body[2].args[0].name == d.body[1].target
    assert d.returns[1] == d.body[1].target  # the new state value is the wrapped one


def test_a_new_orthogonalize_starts_with_muons_newton_schulz_coefficients():
    # Pool constants (0.5, 0.9, ...) in a, b, c would not orthogonalize: one wrap must give Muon's step.
    parent = to_ssa(load_zoo("sgd_momentum"))
    made = []
    for seed in range(400):
        d = _Draft.of(parent, {"orthogonalize": 1.0})
        if MUTATIONS["wrap"](random.Random(seed), d):
            made += [s for s in d.body if s.op == "orthogonalize"]
    assert made, "wrap never made an orthogonalize in 400 draws"
    for s in made:
        assert [a.value for a in s.args[1:]] == [3.4445, -4.775, 2.0315, 5.0, 1e-7]


def test_a_sweep_wraps_every_tensor_value_in_orthogonalize_with_its_defaults():
    # orthogonalize takes one argument besides its defaults: a sweep of AdamW tries it on the
    # momentum, the Adam update and the rest, each once, as it tries sign.
    wraps = [p for p, name in neighbours(load_zoo("adamw"), {"orthogonalize": 1.0}) if name == "wrap"]
    made = [s for p in wraps for s in p.body if s.op == "orthogonalize"]
    assert len(made) == len(wraps) >= 8
    assert all([a.value for a in s.args[1:]] == [3.4445, -4.775, 2.0315, 5.0, 1e-7] for s in made)
    assert len({s.args[0].name for s in made}) == len(made)


@pytest.mark.parametrize("mutation", ["perturb_constant", "perturb_all", "split", "change_arg"])
def test_mutations_leave_the_newton_schulz_coefficients_alone(mutation):
    muon = to_ssa(parse_program(
        "def p(w, g, lr, m):\n"
        "    u = orthogonalize(g, 3.4445, -4.775, 2.0315, 5.0, 1e-07)\n"
        "    m = interp(u, m, 0.9)\n"
        "    update = u + m * 0.5\n"
        "    return update * lr, m\n"))
    coefficients = [s.args[1:] for s in muon.body if s.op == "orthogonalize"]
    changed = 0
    for seed in range(200):
        d = _Draft.of(muon)
        if MUTATIONS[mutation](random.Random(seed), d):
            changed += 1
            assert {s.args[1:] for s in d.body if s.op == "orthogonalize"} == set(coefficients)
    assert changed > 20   # the mutation still moves the other constants and arguments


def test_split_gives_two_interpolations_with_different_betas_as_in_lion():
    start = parse_program("""def f(w, g, lr, m):
    m = interp(g, m, 0.9)
    u = sign(m)
    d = w * 0.01
    u = u + d
    u = u * lr
    return u, m
""")
    lion = load_zoo("lion")
    rng = random.Random(0)
    found = 0
    for _ in range(2000):
        d = _Draft.of(to_ssa(start))
        if not MUTATIONS["split"](rng, d):
            continue
        child = d.program()
        interps = [s for s in child.body if s.op == "interp"]
        assert len(interps) == 2 and interps[0].args[:2] == interps[1].args[:2]  # same inputs, copied
        found += matches(child, lion)  # Lion itself when the state's copy moved to 0.99 (within 1%)
    assert found >= 5, found


@pytest.mark.parametrize("c", [0.9, 0.99, 0.999, 0.5, 1e-8, 0.01, 2.0, -3.0])
def test_perturbed_constants_keep_their_range_and_sign(c):
    rng = random.Random(0)
    for _ in range(300):
        x = perturb_value(c, rng)
        if 0.5 <= c < 1:
            assert 0.5 <= x < 1
        else:
            assert (x > 0) == (c > 0)
        assert float(f"{x:.10g}") == x  # short, readable constants (no 0.9269000000000001)


def test_perturbation_jumps_between_betas_and_homes_in_on_them():
    rng = random.Random(0)
    jumps = sum(abs(perturb_value(0.9, rng) - 0.99) <= 0.0099 for _ in range(2000))
    assert jumps > 60, jumps  # 0.9 -> 0.99 within 1% in one draw, > 3% of the time
    # Keeping a draw only when it gets closer (what selection does) homes in on 0.95 from 0.999.
    c = 0.999
    for _ in range(300):
        x = perturb_value(c, rng)
        if abs(x - 0.95) < abs(c - 0.95):
            c = x
    assert abs(c - 0.95) <= 0.0005, c


def test_add_state_adds_a_moving_average_that_is_carried():
    rng = random.Random(3)
    parent = load_zoo("sgd")
    d = _Draft.of(to_ssa(parent))
    assert MUTATIONS["add_state"](rng, d)
    child = d.program()
    a = check(child)
    assert len(child.state) == 1 and a.live_state == child.state
    assert any(s.op == "interp" for s in child.body)


def test_coefficient_slots_get_constants_far_more_often_than_data():
    # an interpolation weight is a number in nearly every optimizer: inserted interps mostly get one
    rng = random.Random(0)
    start = load_zoo("adamw")
    weights, data = 0, 0
    for _ in range(3000):
        d = _Draft.of(to_ssa(start), {"interp": 1.0})
        before = len(d.body)
        if not MUTATIONS["insert"](rng, d) or len(d.body) == before:
            continue
        new = next(s for s in d.body if s.target not in {t.target for t in to_ssa(start).body})
        weights += 1
        data += not isinstance(new.args[2], Const)
    assert weights > 500 and data / weights < 0.2, (weights, data)


def test_a_split_copy_jumps_rather_than_drifting():
    # a copy within a few percent of the original would serve both uses alike: a wasted child
    rng = random.Random(1)
    start = load_zoo("signum")
    moved = []
    for _ in range(500):
        d = _Draft.of(to_ssa(start))
        if MUTATIONS["split"](rng, d):
            betas = sorted(s.args[2].value for s in d.body if s.op == "interp")
            moved.append(abs(math.log((1 - betas[0]) / (1 - betas[1]))))
    assert len(moved) > 100
    assert sorted(moved)[len(moved) // 2] > 0.5  # the median copy moves 1 - beta by more than x1.6


def test_perturb_all_moves_every_constant_a_little_at_once():
    rng = random.Random(2)
    start = parse_program("""def lion(w, g, lr, m):
    c = interp(g, m, 0.9)
    u = sign(c)
    m = interp(g, m, 0.99)
    u = u + w * 0.5
    u = u * lr
    return u, m""")
    consts = lambda p: [a.value for s in to_ssa(p).body for a in s.args if isinstance(a, Const)]  # noqa: E731
    before = consts(start)
    moved_all = 0
    for _ in range(200):
        d = _Draft.of(to_ssa(start))
        if not MUTATIONS["perturb_all"](rng, d):
            continue
        after = consts(d.program())
        assert len(after) == len(before)
        moved_all += all(a != b for a, b in zip(after, before))
        for a, b in zip(after, before):  # small steps: within a factor 3 (of 1 - beta for the two betas)
            ratio = (1 - a) / (1 - b) if b in (0.9, 0.99) else a / b
            assert 1 / 3 < ratio < 3, (a, b)
    assert moved_all > 60, moved_all  # the smallest steps can round back to a constant's old value


def test_swap_takes_the_decay_out_of_the_sign():
    # sign(c + wd * w) -> sign(c) + wd * w: the move that turns a sign over AdamW's whole update into Lion
    inside = parse_program("""def f(w, g, lr, m):
    c = interp(g, m, 0.9)
    decay = w * 0.5
    u = c + decay
    u = sign(u)
    u = u * lr
    m = interp(g, m, 0.99)
    return u, m""")
    lion = load_zoo("lion_strong_wd")
    rng = random.Random(0)
    found = 0
    for _ in range(100):
        d = _Draft.of(to_ssa(inside))
        if MUTATIONS["swap"](rng, d):
            child = d.program()
            check(child)  # chained statements swapped keep every name defined before it is read
            found += matches(child, lion)
    assert found >= 5, found


LION_LAST_MILE = """def f(w, g, lr, m, s):
    c = interp(g, m, 0.9)
    u = sign(c)
    m = interp(g, m, 0.99)
    s = interp(w, s, 0.9)
    decay = s * 0.5
    u = u + decay
    step_size = minimum(lr, 1.7)
    u = u * step_size
    return u, m, s"""


def test_neighbours_hold_every_single_edit_in_a_fixed_order():
    from optsearch.search.equivalence import screen_child
    from optsearch.search.mutate import neighbours
    # Lion two edits away: its decay reads a moving average of w, and lr passes through a no-op minimum
    start = parse_program(LION_LAST_MILE)
    first = neighbours(start)
    assert first == neighbours(start)                        # deterministic: a sweep resumes by position
    names = [name for _, name in first]
    assert set(names) == {"wrap", "scale", "delete", "change_arg", "swap"}
    rank = {"wrap": 0, "scale": 0, "delete": 1, "swap": 2, "change_arg": 3}   # smallest neighbourhoods first
    assert [rank[n] for n in names] == sorted(rank[n] for n in names)
    screened = [(screen_child(p, 24), name) for p, name in first]
    valid = [p for (p, s), _ in screened if s.ok]
    assert len(valid) >= 10
    # only a wrap or a scaling can be the start again once simplified (sign(sign(c)) and sign(2 * c)
    # are sign(c)): the sweep skips them
    assert {name for (p, s), name in screened if s.ok and s.hash == structural_hash(start)} <= {"wrap", "scale"}
    lion = load_zoo("lion_strong_wd")
    # one edit each: decay reads w (the average becomes dead state), then the minimum goes
    steps = [p for p in valid if any(s.op == "mul" and Var("w") in s.args for s in p.body)]
    assert steps and not any(matches(p, lion) for p in valid)
    assert any(matches(screen_child(q, 24)[0], lion) for p in steps for q, _ in neighbours(p)
               if screen_child(q, 24)[1].ok)


ADAM_TWO_BETAS = """def f(w, g, lr, step, m, v):
    c = interp(g, m, 0.85)
    c = bias_correct(c, 0.8, step)
    s = square(g)
    v = interp(s, v, 0.999)
    r = sqrt(v)
    r = r + 1e-8
    u = c / r
    decay = 0.5 * w
    u = u + decay
    u = u * lr
    m = interp(g, m, 0.985)
    return u, m, v"""


def test_neighbours_wrap_values_in_the_unary_ops_searched():
    from optsearch.search.equivalence import screen_child
    from optsearch.search.mutate import neighbours
    # The move that turns Adam with Lion's two betas into Lion: u = sign(c / r), which simplifies to
    # sign(c) with v dead; a random mutation draws it about once in 800 children.
    start = parse_program(ADAM_TWO_BETAS)
    ops = {"sign": 1.0, "abs": 1.0, "add": 1.0, "interp": 1.0}
    wraps = [p for p, name in neighbours(start, ops) if name == "wrap"]
    assert {s.op for p in wraps for s in p.body} - {s.op for s in start.body} == {"sign", "abs"}
    lion = [screen_child(p, 24)[0] for p in wraps if matches(screen_child(p, 24)[0], load_zoo("lion_strong_wd"),
                                                            rel_tol=0.2)]
    assert len(lion) == 1 and lion[0].state == ("m",)


def test_only_a_betas_slot_keeps_a_constant_in_one_minus_beta_space():
    # A weight decay that reached 0.6 must be free to grow past 1 (Lion's best decay on the small-data
    # ViT is 2); an interpolation weight of 0.6 stays a beta in [0.5, 1).
    rng = random.Random(0)
    decays = [perturb_value(0.6, rng, beta=False) for _ in range(300)]
    assert max(decays) > 1.0 and min(decays) < 0.5
    program = parse_program("def f(w, g, lr, m):\n    m = interp(g, m, 0.6)\n    d = w * 0.6\n"
                            "    u = m + d\n    u = u * lr\n    return u, m\n")
    seen: dict[str, list[float]] = {"interp": [], "mul": [], "add": []}
    for seed in range(300):
        child = mutate(program, random.Random(seed), {"perturb_constant": 1.0})
        if child is not None:
            for s in child[0].body:
                seen[s.op] += [a.value for a in s.args if isinstance(a, Const)]
    assert all(0.5 <= x < 1 for x in seen["interp"]) and max(seen["mul"]) > 1.0


def test_a_neighbour_drops_a_term_by_reading_zero():
    from optsearch.search.equivalence import screen_child
    from optsearch.search.mutate import neighbours
    # A seed's best at 0.9987: decay interp(lr, w, 0.5) = 0.5 w + 0.5 lr; lr read as 0 is Lion.
    start = parse_program("""def f(w, g, lr, m):
    c = interp(g, m, 0.9)
    u = sign(c)
    d = interp(lr, w, 0.5)
    u = u + d
    u = u * lr
    m = interp(g, m, 0.99)
    return u, m""")
    lion = load_zoo("lion_strong_wd")
    assert not matches(start, lion)
    assert any(matches(screen_child(p, 24)[0], lion) for p, name in neighbours(start) if name == "change_arg")


LION_UNIT_DECAY = """def f(w, g, lr, m):
    c = interp(g, m, 0.9)
    u = sign(c)
    u = u + w
    u = u * lr
    m = interp(g, m, 0.99)
    return u, m"""

LION_CONSTANT_LR = """def f(w, g, lr, m):
    c = interp(g, m, 0.9)
    u = sign(c)
    d = w * 2.0
    u = u + d
    u = u * 0.001
    m = interp(g, m, 0.99)
    return u, m"""


@pytest.mark.parametrize("source, edit", [(LION_UNIT_DECAY, "scale"), (LION_CONSTANT_LR, "change_arg")])
def test_neighbours_double_a_term_and_put_lr_where_a_constant_stood_for_it(source, edit):
    # Searches stall on these: `+ w` has no constant to perturb up to Lion's decay of 2 (simplification
    # folds `w * 1.0` away), and a constant that took lr's place is only right at one lr.
    from optsearch.search.equivalence import screen_child
    from optsearch.search.mutate import neighbours
    lion, start = load_zoo("lion_wd2"), parse_program(source)
    assert not matches(start, lion)
    assert any(matches(screen_child(p, 24)[0], lion) for p, name in neighbours(start) if name == edit)
