"""Role candidates: one program per parameter role, a parsed-never-executed text form, and the
grouped step function that runs each program on its own parameters."""
from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from optsearch.discovered import load_zoo, load_zoo_candidate, zoo_names, zoo_path, zoo_role_names
from optsearch.dsl import (ROLES, CompiledProgram, FlatReducer, GroupedStep, Layout, Program, ProgramError,
                           RoleProgram, compile_candidate, default_role, parameter_groups, parse_candidate,
                           parse_program, print_candidate, print_program, program_for)
from optsearch.dsl.roles import DEFAULT

from .program_strategies import ALGEBRA, programs

LION = print_program(load_zoo("lion"))
ADAMW = print_program(load_zoo("adamw"))


def candidate_text(roles: str, *functions: str) -> str:
    return "\n\n".join(functions or (LION, ADAMW)) + "\n" + roles + "\n"


def test_a_roles_dict_makes_a_role_candidate_and_default_covers_the_unlisted_roles():
    c = parse_candidate(candidate_text('roles = {"hidden": lion, "default": adamw}'))
    assert isinstance(c, RoleProgram) and c.name == "lion_adamw"
    assert [p.name for p in c.programs] == ["lion", "adamw"]
    assert {r: program_for(c, r).name for r in ROLES} == {
        "hidden": "lion", "embedding": "adamw", "head": "adamw", "vector": "adamw"}


def test_a_file_with_one_function_stays_a_plain_program():
    assert parse_candidate(LION) == parse_program(LION)
    assert program_for(parse_program(LION), "vector") == parse_program(LION)


def test_print_of_parse_is_a_fixed_point_in_canonical_role_order():
    text = candidate_text('roles = {"vector": adamw, "default": adamw, "hidden": lion}')
    once = print_candidate(parse_candidate(text))
    assert once.endswith('roles = {"hidden": lion, "vector": adamw, "default": adamw}\n')
    assert print_candidate(parse_candidate(once)) == once
    assert parse_candidate(once) == parse_candidate(text)


def test_role_candidates_are_hashable_values():
    a = parse_candidate(candidate_text('roles = {"hidden": lion, "default": adamw}'))
    b = parse_candidate(candidate_text('roles = {"hidden": lion, "default": adamw}', LION, ADAMW))
    c = parse_candidate(candidate_text('roles = {"hidden": adamw, "default": lion}'))
    assert a == b and hash(a) == hash(b) and a != c
    assert len({a, b, c}) == 2


@settings(max_examples=40, deadline=None)
@given(programs(max_statements=6, ops=ALGEBRA), programs(max_statements=6, ops=ALGEBRA),
       st.dictionaries(st.sampled_from((*ROLES, DEFAULT)), st.sampled_from(("f", "h")), min_size=1))
def test_print_of_parse_is_a_fixed_point_for_random_candidates(f, h, table):
    # (ALGEBRA has no `neg`: the printer writes neg(0.0) as `-0.0`, a literal the parser refuses,
    # for plain programs as well.)
    table = {**table, DEFAULT: "f", "hidden": "h"}  # both used, every role covered
    order = [k for k in (*ROLES, DEFAULT) if k in table]
    c = RoleProgram((replace(f, name="f"), replace(h, name="h")), tuple((k, table[k]) for k in order))
    text = print_candidate(c)
    assert parse_candidate(text) == c
    assert print_candidate(parse_candidate(text)) == text


def test_the_zoo_role_candidates_load_by_name_and_print_as_a_fixed_point():
    assert "lion_adamw" in zoo_role_names() and "lion_adamw" not in zoo_names()
    for name in zoo_role_names():
        c = load_zoo_candidate(name)
        assert isinstance(c, RoleProgram)
        once = print_candidate(c)
        assert print_candidate(parse_candidate(once)) == once
    lion_adamw = load_zoo_candidate("lion_adamw")
    assert program_for(lion_adamw, "hidden") == load_zoo("lion")
    assert program_for(lion_adamw, "head") == load_zoo("adamw")
    with pytest.raises(KeyError):
        load_zoo("lion_adamw")  # the plain-program loader keeps its contract
    assert zoo_path("lion_adamw").is_file()


BAD = {  # name -> (text, where the error points: the line of the last occurrence, words in the message)
    "unknown role": (candidate_text('roles = {"hiden": lion, "default": adamw}'), "roles =", "unknown role 'hiden' (did you mean 'hidden'?)"),
    "missing function": (candidate_text('roles = {"hidden": lon, "default": adamw}'), "roles =", "'lon', which is no function of this file (did you mean 'lion'?)"),
    "role left out": (candidate_text('roles = {"hidden": lion, "vector": adamw}'), "roles =", "no program for the roles embedding, head"),
    "unused function": (candidate_text('roles = {"default": adamw}'), "def lion", "function 'lion' steps no role"),
    "not a dict": (candidate_text('roles = [lion, adamw]'), "roles =", "`roles` must be a dict"),
    "key not a string": (candidate_text('roles = {hidden: lion, "default": adamw}'), "roles =", "role names in quotes"),
    "value not a name": (candidate_text('roles = {"hidden": lion(), "default": adamw}'), "roles =", "must name a function of this file, found a call"),
    "listed twice": (candidate_text('roles = {"hidden": lion, "hidden": adamw, "default": adamw}'), "roles =", "listed twice"),
    "assigned twice": (candidate_text('roles = {"default": adamw, "hidden": lion}\nroles = {"default": adamw}'), "roles =", "assigned twice"),
    "other statement": (candidate_text('roles = {"default": adamw, "hidden": lion}\nx = 1'), "x = 1", "found Assign"),
    "same name twice": (candidate_text('roles = {"default": lion}', LION, LION), "def lion", "a second function named 'lion'"),
    "bad program": (candidate_text('roles = {"default": adamw, "hidden": f}', "def f(w, g, lr):\n    u = sgn(g)\n    return u\n", ADAMW), "sgn(", "unknown op 'sgn'"),
    "several functions, no roles": (LION + "\n\n" + ADAMW, "def adamw", "exactly one function, or several and a module-level `roles"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_role_candidates_get_one_line_naming_file_line_and_cause(name):
    text, where, words = BAD[name]
    line = text[:text.rindex(where)].count("\n") + 1
    with pytest.raises(ProgramError) as e:
        parse_candidate(text, "cand.py")
    assert (e.value.path, e.value.line) == ("cand.py", line), str(e.value)
    assert words in e.value.message
    assert "\n" not in str(e.value)


def test_default_role_reads_the_shape():
    assert [default_role(s) for s in [(3, 4), (2, 3, 4), (5,), ()]] == ["hidden", "hidden", "vector", "vector"]


def test_parameters_are_grouped_by_program_in_program_order():
    c = load_zoo_candidate("lion_adamw")
    groups = parameter_groups(c, ["vector", "hidden", "embedding", "hidden", "head"])
    assert [(g.program.name, g.indices) for g in groups] == [("lion", (1, 3)), ("adamw", (0, 2, 4))]
    only_vectors = parameter_groups(c, ["vector", "vector"])
    assert [(g.program.name, g.indices) for g in only_vectors] == [("adamw", (0, 1))]
    assert parameter_groups(load_zoo("sgd"), ["hidden", "vector"])[0].indices == (0, 1)


def run_steps(step, shapes, w, grads, lr=0.01):
    layout = Layout(shapes)
    reducer, state = FlatReducer(layout), step.init_state(w, layout)
    for t, g in enumerate(grads, start=1):
        update, state = step.step_flat(w, g, lr, t, state, reducer)
        w = w - update
    return w


def test_a_grouped_step_equals_each_program_on_its_own_parameters():
    torch.manual_seed(0)
    shapes = [torch.Size(s) for s in [(4, 3), (6, 2), (5,), (3,)]]
    n = [s.numel() for s in shapes]
    w = torch.randn(2, sum(n))
    grads = [torch.randn(2, sum(n)) for _ in range(4)]
    # A per-tensor reduction (adafactor) and a global one (clip by global norm) inside the groups.
    clip = parse_program("def clipped(w, g, lr):\n    n = global_norm(g)\n    u = g / n\n    u = u * lr\n"
                         "    return u\n")
    grouped = GroupedStep([(CompiledProgram(load_zoo("adafactor")), 2), (CompiledProgram(clip), 2)])
    together = run_steps(grouped, shapes, w, grads)
    split = n[0] + n[1]
    first = run_steps(CompiledProgram(load_zoo("adafactor")), shapes[:2], w[:, :split], [g[:, :split] for g in grads])
    second = run_steps(CompiledProgram(clip), shapes[2:], w[:, split:], [g[:, split:] for g in grads])
    torch.testing.assert_close(together, torch.cat([first, second], -1), rtol=0, atol=0)
    assert grouped.state_numel(shapes) == (CompiledProgram(load_zoo("adafactor")).state_numel(shapes[:2])
                                           + CompiledProgram(clip).state_numel(shapes[2:]))
    # The global norm spans its own group only: over the whole buffer it would differ.
    whole = run_steps(CompiledProgram(clip), shapes, w, grads)
    assert not torch.allclose(whole[:, split:], together[:, split:])


def test_compile_candidate_orders_parameters_group_by_group_and_keeps_plain_programs_as_they_are():
    roles = ["vector", "hidden", "embedding", "hidden"]
    step, order = compile_candidate(load_zoo_candidate("lion_adamw"), roles)
    assert isinstance(step, GroupedStep) and order == (1, 3, 0, 2) and step.counts == (2, 2)
    plain, order = compile_candidate(load_zoo("lion"), roles)
    assert isinstance(plain, CompiledProgram) and plain.program == load_zoo("lion") and order == (0, 1, 2, 3)
    one, order = compile_candidate(load_zoo_candidate("lion_adamw"), ["vector", "head"])
    assert isinstance(one, CompiledProgram) and one.program == load_zoo("adamw") and order == (0, 1)


def test_one_function_with_a_roles_dict_is_a_role_candidate_that_steps_like_the_plain_program():
    c = parse_candidate(candidate_text('roles = {"default": lion}', LION))
    assert isinstance(c, RoleProgram) and c.programs == (parse_program(LION),)
    step, order = compile_candidate(c, ["hidden", "vector"])
    assert isinstance(step, CompiledProgram) and step.program == parse_program(LION) and order == (0, 1)
