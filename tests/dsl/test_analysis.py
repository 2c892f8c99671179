"""Abstract execution: type and arity errors, liveness, the canonical form and its hash."""
import textwrap

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from .program_strategies import ALGEBRA, commutative_swaps, programs, rename, renamings, reorderings, run

from optsearch.dsl import (Const, Program, ProgramError, Statement, Var, canonicalize, check, dead_statements,
                           parse_program, print_program, structural_hash, variable_types)
from optsearch.discovered import load_zoo, zoo_names


def parse(text: str) -> Program:
    return parse_program(textwrap.dedent(text), validate=False)


def check_error(text: str) -> ProgramError:
    with pytest.raises(ProgramError) as info:
        check(parse(text), path="prog.py")
    assert info.value.path == "prog.py"
    return info.value


# --- Types and errors -------------------------------------------------------------------

def test_reductions_give_scalars_and_elementwise_ops_give_tensors_if_any_argument_is_one():
    p = parse("""
        def f(w, g, lr, step, m):
            n = norm(g)
            s = n * lr
            b = bias_correct(0.5, 0.9, step)
            u = g * s
            gn = global_norm(u)
            return u, m
    """)
    types = variable_types(p)
    assert {k: types[k] for k in ("w", "g", "lr", "step", "m")} == {
        "w": "tensor", "g": "tensor", "lr": "scalar", "step": "scalar", "m": "tensor"}
    assert (types["n"], types["s"], types["b"], types["u"], types["gn"]) == (
        "scalar", "scalar", "scalar", "tensor", "scalar")


@pytest.mark.parametrize("text, line, fragment", [
    ("def f(w, g, lr):\n    n = norm(lr)\n    u = g * n\n    return u\n", 2,
     "norm() needs a tensor for argument 'x', but 'lr' is a scalar"),
    ("def f(w, g, lr):\n    n = dot(g, 2.0)\n    u = g * n\n    return u\n", 2,
     "dot() needs a tensor for argument 'y', but a constant"),
    ("def f(w, g, lr):\n    s = mean(g)\n    n = rms(s)\n    return g\n", 3, "'s' is a scalar"),
    ("def f(w, g, lr):\n    u = lr * 2.0\n    return u\n", 3, "the update must be a tensor shaped like w, but 'u' is a scalar"),
    ("def f(w, g, lr, m):\n    m = mean(g)\n    return g, m\n", 3, "the new value of state 'm' must be a tensor"),
    ("def f(w, g, lr):\n    u = g * m\n    return u\n", 2, "variable 'm' is used before it is defined"),
    ("def f(w, g, lr):\n    u = g * lr\n    return v\n", 3, "returned variable 'v' is not defined"),
    ("def f(w, g, lr, m, v):\n    u = g * lr\n    return u, m\n", 3, "(update, m, v): 3 values, got 2"),
    ("def f(w, g, lr):\n    u = g * lr\n    return u, g\n", 3, "(update): 1 values, got 2"),
], ids=["reduction of scalar", "reduction of constant", "reduction of reduction", "scalar update",
        "scalar state", "use before definition", "undefined return", "missing state", "extra return"])
def test_check_reports_the_cause_and_line(text, line, fragment):
    err = check_error(text)
    assert err.line == line
    assert fragment in err.message


def test_use_before_definition_is_an_error_even_if_defined_later():
    err = check_error("def f(w, g, lr):\n    u = g * v\n    v = g * lr\n    return u\n")
    assert (err.line, err.message) == (2, "variable 'v' is used before it is defined")


def test_check_rejects_ir_with_unknown_ops_wrong_arity_or_bad_parameters():
    def program(body, params=("w", "g", "lr")):
        return Program("f", params, body, ("u",))
    with pytest.raises(ProgramError, match="unknown op 'sgn' .*did you mean 'sign'"):
        check(program((Statement("u", "sgn", (Var("g"),), 7),)))
    with pytest.raises(ProgramError, match=r"sign\(x\) takes 1 argument\(s\), got 2") as info:
        check(program((Statement("u", "sign", (Var("g"), Var("w")), 4),)))
    assert info.value.line == 4
    with pytest.raises(ProgramError, match="missing lr"):
        check(program((Statement("u", "sign", (Var("g"),)),), params=("w", "g")))
    with pytest.raises(ProgramError, match="duplicate parameter name 'g'"):
        check(program((Statement("u", "sign", (Var("g"),)),), params=("w", "g", "lr", "g")))


# --- Liveness -------------------------------------------------------------------------------

def test_statements_that_cannot_reach_the_update_are_dead():
    p = parse("""
        def f(w, g, lr):
            a = g * 2.0
            b = abs(w)
            u = a * lr
            return u
    """)
    assert [s.target for s in dead_statements(p)] == ["b"]


def test_a_state_whose_old_value_is_never_read_has_a_dead_update():
    p = parse("""
        def f(w, g, lr, m):
            m = interp(g, m, 0.9)
            u = g * lr
            return u, m
    """)
    assert [s.target for s in dead_statements(p)] == ["m"]
    assert check(p).live_state == ()


def test_state_is_live_when_it_reaches_the_update_in_a_later_step():
    p = parse("""
        def f(w, g, lr, m, v, z):
            u = v * lr
            v = m + g
            m = m * 0.9
            z = z + g
            return u, m, v, z
    """)
    a = check(p)
    assert a.live_state == ("m", "v")
    assert [s.target for s in dead_statements(p)] == ["z"]


def test_zoo_programs_have_no_dead_code():
    for name in zoo_names():
        p = load_zoo(name)
        assert dead_statements(p) == (), name
        assert check(p).live_state == p.state, name


# --- Canonical form and structural hash ----------------------------------------------------

LION = load_zoo("lion")


def test_canonical_form_renames_variables_and_drops_dead_code():
    p = parse("""
        def lion(w, g, lr, step, mom, unused):
            junk = exp(w)
            c = interp(g, mom, 0.9)
            update = sign(c)
            mom = interp(g, mom, 0.99)
            unused = unused + g
            update = update + w * 0.01
            update = update * lr
            return update, mom, unused
    """)
    canon = canonicalize(p)
    assert canon.params == ("w", "g", "lr", "s1")
    assert print_program(canon) == print_program(canonicalize(LION))
    assert structural_hash(p) == structural_hash(LION)


def test_hash_is_equal_for_programs_differing_only_in_names_order_and_commutative_arguments():
    p = parse("""
        def other(w, g, lr, m):
            decay = 0.01 * w
            m2 = interp(g, m, 0.99)
            c = interp(g, m, 0.9)
            s = sign(c)
            s = decay + s
            s = lr * s
            return s, m2
    """)
    assert structural_hash(p) == structural_hash(LION)


@pytest.mark.parametrize("a, b", [
    ("lion", "signum"),
    ("adam", "adamw"),
    ("sgd", "signsgd"),
    ("sgd_momentum", "nesterov"),
])
def test_hash_differs_for_different_zoo_programs(a, b):
    assert structural_hash(load_zoo(a)) != structural_hash(load_zoo(b))


def test_all_zoo_hashes_are_distinct():
    hashes = {structural_hash(load_zoo(n)) for n in zoo_names()}
    assert len(hashes) == len(zoo_names())
    assert all(len(h) == 16 and int(h, 16) >= 0 for h in hashes)


def test_hash_differs_when_a_constant_changes():
    changed = parse_program(print_program(LION).replace("0.99", "0.98"))
    assert structural_hash(changed) != structural_hash(LION)


@pytest.mark.parametrize("op", ["sub", "div", "power", "maximum"])
def test_hash_tracks_argument_order_only_for_non_commutative_ops(op):
    def prog(x, y):
        return Program("f", ("w", "g", "lr"), (Statement("u", op, (Var(x), Var(y))),), ("u",))
    same = structural_hash(prog("g", "w")) == structural_hash(prog("w", "g"))
    from optsearch.dsl import OPS
    assert same == OPS[op].commutative


def test_interp_argument_swap_is_a_different_program():
    swapped = parse_program(print_program(LION).replace("interp(g, m, 0.9)", "interp(m, g, 0.9)"))
    assert structural_hash(swapped) != structural_hash(LION)


def test_unused_step_parameter_does_not_change_the_hash():
    p = parse_program(print_program(LION).replace("(w, g, lr, m)", "(w, g, lr, step, m)"))
    assert structural_hash(p) == structural_hash(LION)


any_programs = st.one_of(programs(), programs(ops=ALGEBRA))


@settings(max_examples=100)
@given(st.data())
def test_hash_is_invariant_under_random_renaming(data):
    p = data.draw(any_programs)
    q = rename(p, data.draw(renamings(p)))
    check(q)
    assert structural_hash(q) == structural_hash(p)


@settings(max_examples=150)
@given(st.data())
def test_hash_is_invariant_under_random_valid_reordering(data):
    p = data.draw(any_programs)
    q = data.draw(reorderings(p))
    check(q)
    assert structural_hash(q) == structural_hash(p)


@settings(max_examples=200)  # enough to reach commutative ops over deep sub-expressions
@given(st.data())
def test_hash_is_invariant_under_swapping_commutative_arguments(data):
    p = data.draw(any_programs)
    q = data.draw(commutative_swaps(p))
    assert structural_hash(q) == structural_hash(p)


@given(any_programs)
def test_canonical_form_is_valid_idempotent_and_computes_the_same_updates(p):
    canon = canonicalize(p)
    a = check(canon)
    assert a.dead == ()
    assert canonicalize(canon) == canon
    assert structural_hash(canon) == structural_hash(p)
    for x, y in zip(run(p), run(canon)):
        torch.testing.assert_close(x, y, equal_nan=True)


@given(programs(), st.data())
def test_changing_a_live_constant_changes_the_hash(p, data):
    a = check(p)
    spots = [(i, k) for i in sorted(a.live) for k, arg in enumerate(p.body[i].args) if isinstance(arg, Const)]
    if not spots:
        return
    i, k = data.draw(st.sampled_from(spots))
    old = p.body[i].args[k].value
    new = data.draw(st.sampled_from([0.25, 3.0, -7.5]).filter(lambda c: c != old))
    args = p.body[i].args[:k] + (Const(new),) + p.body[i].args[k + 1:]
    body = p.body[:i] + (Statement(p.body[i].target, p.body[i].op, args),) + p.body[i + 1:]
    q = Program(p.name, p.params, body, p.returns)
    assert structural_hash(q) != structural_hash(p)
