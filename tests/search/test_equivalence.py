"""Screening before evaluation: rejects, equivalence by hash and by fingerprint, target matching."""
import pytest
import torch

from optsearch.discovered import load_zoo, zoo_path
from optsearch.dsl import parse_program
from optsearch.dsl.probe import MATRIX_PROBE_SHAPES, probe
from optsearch.search.equivalence import EquivalenceCache, fingerprint, matches, screen, screen_child

LION_SRC = """def f(w, g, lr, m):
    d = DECAY * w
    c = interp(g, m, B1)
    u = sign(c)
    m = interp(g, m, B2)
    u = u + d
    u = u * lr
    return u, m
"""


def _lion(b1="0.9", b2="0.99", decay="0.01"):
    return parse_program(LION_SRC.replace("B1", b1).replace("B2", b2).replace("DECAY", decay))


def _p(body: str, params: str = "w, g, lr") -> object:
    return parse_program(f"def f({params}):\n" + "".join(f"    {line}\n" for line in body.strip().splitlines()),
                         validate=False)


def test_equivalent_programs_share_a_fingerprint_but_not_always_a_hash():
    a = _p("m = interp(g, m, 0.9)\nu = m * lr\nreturn u, m", "w, g, lr, m")
    b = _p("m = interp(m, g, 0.1)\nu = lr * m\nreturn u, m", "w, g, lr, m")   # same EMA, other way round
    c = _p("m = interp(g, m, 0.9)\nt = m * 2.0\nu = sign(t)\nu = u * lr\nreturn u, m", "w, g, lr, m")
    d = _p("m = interp(g, m, 0.9)\nu = sign(m)\nu = u * lr\nreturn u, m", "w, g, lr, m")
    assert fingerprint(a)[0] == fingerprint(b)[0]
    assert screen(a).hash != screen(b).hash
    assert fingerprint(c)[0] == fingerprint(d)[0]  # sign(2x) == sign(x)


@pytest.mark.parametrize("other", [
    "m = interp(g, m, 0.91)\nu = m * lr\nreturn u, m",       # another beta
    "m = interp(g, m, 0.9)\nu = m * 0.01\nreturn u, m",       # ignores lr (equal only at lr = 0.01)
    "m = interp(g, m, 0.9)\nu = g * lr\nreturn u, m",         # no momentum
    "m = interp(g, m, 0.9)\nd = w * 0.01\nu = m + d\nu = u * lr\nreturn u, m",  # weight decay
    "m = interp(g, m, 0.9)\nu = m * lr\ns = bias_correct(u, 0.9, step)\nreturn s, m",  # step-dependent
])
def test_different_behaviour_gives_different_fingerprints(other):
    base = _p("m = interp(g, m, 0.9)\nu = m * lr\nreturn u, m", "w, g, lr, m")
    params = "w, g, lr, step, m" if "step" in other else "w, g, lr, m"
    assert fingerprint(base)[0] != fingerprint(_p(other, params))[0]


@pytest.mark.parametrize("body, params, reason", [
    ("u = norm(g)\nreturn u", "w, g, lr", "invalid"),                    # a scalar update
    ("u = w * lr\nreturn u", "w, g, lr", "ignores the gradient"),
    ("u = -g\nu = sqrt(u)\nu = u * lr\nreturn u", "w, g, lr", "non-finite"),
    ("u = g - g\nu = u * lr\nreturn u", "w, g, lr", "zero update"),
    ("u = g * lr\nu = u * 0.5\nu = u * 0.5\nreturn u", "w, g, lr", "too long"),
])
def test_screen_rejects_children_nobody_should_train(body, params, reason):
    s = screen(_p(body, params), max_statements=3 if reason != "too long" else 2)
    assert not s.ok and reason in s.reason


def test_a_gradient_carried_only_through_state_counts_as_read():
    delayed = _p("u = m * lr\nreturn u, g", "w, g, lr, m")  # last step's gradient: still reads g
    assert screen(delayed).ok


def test_screen_accepts_the_zoo():
    from optsearch.discovered import zoo_names
    for name in zoo_names():  # factored (row/col) state included
        s = screen(load_zoo(name))
        assert s.ok and s.hash and s.fingerprint, name


def test_the_cache_finds_by_hash_first_then_by_fingerprint():
    cache = EquivalenceCache()
    cache.add(1, "h1", "f1")
    cache.add(2, "h2", "f1")  # a later program with a known fingerprint keeps the first source
    assert cache.lookup("h1", "zz") == (1, "hash")
    assert cache.lookup("h2", "f1") == (2, "hash")
    assert cache.lookup("h3", "f1") == (1, "fingerprint")
    assert cache.lookup("h3", "f3") is None
    assert (cache.hash_hits, cache.fingerprint_hits) == (2, 1)


def test_matching_lion_tolerates_one_percent_on_every_constant():
    lion = load_zoo("lion")
    assert matches(_lion(), lion)
    assert matches(_lion("0.905", "0.9899", "0.0101"), lion)
    assert not matches(_lion("0.92"), lion)
    assert not matches(_lion(b2="0.97"), lion)
    assert not matches(_lion(decay="0.02"), lion)
    assert not matches(load_zoo("signum"), lion) and not matches(load_zoo("adamw"), lion)


def test_matching_ignores_names_order_dead_code_and_commutative_order():
    lion = load_zoo("lion")
    variant = _p("""x = w * 0.01
junk = square(g)
mom = interp(g, mom, 0.99)
c = interp(g, mom_old, 0.9)
u = sign(c)
u = x + u
u = lr * u
return u, mom""".replace("mom_old", "q"), "w, g, lr, q, mom")
    # c reads q (state 1) while the new momentum is state 2: not Lion (its c must read the momentum)
    assert not matches(variant, lion)
    fixed = _p("""x = w * 0.01
junk = square(g)
c = interp(g, mom, 0.9)
mom = interp(g, mom, 0.99)
u = sign(c)
u = x + u
u = lr * u
return u, mom""", "w, g, lr, mom")
    assert matches(fixed, lion)


def test_matching_with_an_absolute_tolerance_for_epsilons():
    rms = load_zoo("rmsprop")
    other_eps = parse_program("def f(w, g, lr, v):\n    g2 = square(g)\n    v = interp(g2, v, 0.99)\n"
                              "    d = sqrt(v)\n    d = d + 3e-09\n    u = g / d\n    u = u * lr\n    return u, v\n")
    assert not matches(other_eps, rms)
    assert matches(other_eps, rms, rel_tol=0.01, abs_tol=1e-6)


def test_children_are_simplified_before_they_are_hashed_and_matched():
    # AdamW with its update wrapped in sign is signum: Adam's denominator and bias corrections go
    adamw_sign = parse_program(zoo_path("adamw").read_text().replace(
        "update = mhat / d", "update = mhat / d\n    update = sign(update)"))
    child, s = screen_child(adamw_sign)
    assert s.ok and [st.op for st in child.body] == ["interp", "sign", "mul", "add", "mul"]
    assert s.hash == screen(child).hash
    raw, s_raw = screen_child(adamw_sign, simplify=False)
    assert raw == adamw_sign and s_raw.hash != s.hash and s_raw.fingerprint == s.fingerprint
    # and an invalid child is still rejected with the checker's reason
    bad, s_bad = screen_child(_p("u = g + q\nreturn u"))
    assert not s_bad.ok and "q" in s_bad.reason


def test_the_fingerprint_is_computed_on_the_first_steps_of_the_one_probe():
    _, u = fingerprint(load_zoo("adam"))
    assert torch.equal(u, probe().updates(load_zoo("adam"))[:len(u)])


def test_fingerprints_of_programs_without_matrix_ops_are_the_ones_stored_before_the_tall_matrix():
    """Programs with matrix ops are probed with a third, tall matrix; every other program keeps the
    two-tensor probe, so fingerprints already in run stores stay valid (hashes from before the change)."""
    assert {n: fingerprint(load_zoo(n))[0] for n in ("adamw", "lion", "adafactor")} == {
        "adamw": "039aa029b7237f71", "lion": "334f3d7d6e9337fd", "adafactor": "6384b8abdb6d2806"}
    _, u = fingerprint(load_zoo("muon"))
    assert u.shape[-1] == sum(s.numel() for s in MATRIX_PROBE_SHAPES)
