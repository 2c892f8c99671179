"""IR -> text: one op per line, and print(parse(text)) is a fixed point."""
import textwrap

from hypothesis import given
from .program_strategies import programs

from optsearch.dsl import Const, Statement, Var, check, format_statement, parse_program, print_program
from optsearch.discovered import zoo_names, zoo_path


def test_printer_writes_one_op_per_line():
    p = parse_program("def f(w, g, lr, m):\n    m = interp(g, m, 0.9)\n    return -sign(m) * lr + w * 1e-2, m\n")
    text = print_program(p)
    assert text == textwrap.dedent("""\
        def f(w, g, lr, m):
            m = interp(g, m, 0.9)
            t1 = sign(m)
            t2 = -t1
            t3 = t2 * lr
            t4 = w * 0.01
            t5 = t3 + t4
            return t5, m
    """)


def test_statements_print_infix_for_arithmetic_and_calls_for_the_rest():
    assert format_statement(Statement("u", "sub", (Var("g"), Const(-1.0)))) == "u = g - -1.0"
    assert format_statement(Statement("u", "neg", (Var("g"),))) == "u = -g"
    assert format_statement(Statement("u", "neg", (Const(-2.0),))) == "u = --2.0"
    assert format_statement(Statement("u", "clip", (Var("g"), Const(1e-08)))) == "u = clip(g, 1e-08)"


def test_constants_print_exactly():
    for c in (0.1, 1e-08, -0.0, 1e300, 2.0 ** -1074, 1 / 3):
        p = parse_program(print_program(parse_program(f"def f(w, g, lr):\n    u = g * {c!r}\n    return u\n")))
        assert repr(p.body[0].args[1].value) == repr(c)


def test_print_of_parse_is_a_fixed_point_for_the_zoo():
    for name in zoo_names():
        once = print_program(parse_program(zoo_path(name).read_text()))
        assert print_program(parse_program(once)) == once


def test_print_of_parse_is_a_fixed_point_for_nested_text():
    text = "def f(w, g, lr, step, m):\n    m += g * g\n    return bias_correct(m, 0.9, step) / (sqrt(m) + 1e-8) * lr, m\n"
    once = print_program(parse_program(text))
    assert print_program(parse_program(once)) == once


@given(programs())
def test_random_programs_survive_print_then_parse(program):
    text = print_program(program)
    again = parse_program(text)
    assert again == program
    assert print_program(again) == text
    assert [s.line for s in again.body] == list(range(2, 2 + len(program.body)))
    check(again)
