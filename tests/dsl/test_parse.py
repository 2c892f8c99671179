"""Program text -> IR: what the parser accepts, how it flattens, and how it rejects bad text."""
import textwrap
from dataclasses import replace

import pytest

from optsearch.dsl import Const, Program, ProgramError, Statement, Var, load_program, parse_program, print_program
from optsearch.discovered import load_zoo, zoo_names


def parse(text: str, **kw) -> Program:
    return parse_program(textwrap.dedent(text), **kw)


def test_inputs_are_w_g_lr_step_and_every_other_parameter_is_state():
    p = parse("""
        def f(w, g, lr, step, m, v):
            u = g * lr
            return u, m, v
    """)
    assert p.inputs == ("w", "g", "lr", "step")
    assert p.state == ("m", "v")
    assert p.returns == ("u", "m", "v")


def test_a_statement_is_one_op_on_variables_and_float_literals():
    p = parse("""
        def f(w, g, lr, m):
            m = interp(g, m, 0.9)
            u = sign(m)
            u = u * lr
            return u, m
    """)
    assert p.body == (
        Statement("m", "interp", (Var("g"), Var("m"), Const(0.9))),
        Statement("u", "sign", (Var("m"),)),
        Statement("u", "mul", (Var("u"), Var("lr"))),
    )
    assert [s.line for s in p.body] == [3, 4, 5]


def test_nested_expressions_are_flattened():
    p = parse("""
        def f(w, g, lr):
            u = sign(g) * lr + w * 0.01
            return u
    """)
    assert print_program(p) == textwrap.dedent("""\
        def f(w, g, lr):
            t1 = sign(g)
            t2 = t1 * lr
            t3 = w * 0.01
            u = t2 + t3
            return u
    """)


def test_temporaries_never_clash_with_the_programs_own_names():
    p = parse("""
        def f(w, g, lr, t1):
            t2 = abs(g) * t1
            return -t2 * lr, t1
    """)
    targets = [s.target for s in p.body]
    assert targets == ["t3", "t2", "t4", "t5"]
    assert p.returns == ("t5", "t1")


def test_operators_map_onto_their_ops():
    p = parse("""
        def f(w, g, lr):
            a = g + w
            a = a - g
            a = a * g
            a = a / g
            a = -a
            return a
    """)
    assert [s.op for s in p.body] == ["add", "sub", "mul", "div", "neg"]


def test_augmented_assignment_reads_the_old_value():
    p = parse("""
        def f(w, g, lr, m):
            m *= 0.9
            m += g
            return m, m
    """)
    assert p.body == (Statement("m", "mul", (Var("m"), Const(0.9))), Statement("m", "add", (Var("m"), Var("g"))))


def test_signed_literals_are_constants():
    p = parse("""
        def f(w, g, lr):
            a = g * -2.5
            a = a + +3
            a = a * +g
            return a
    """)
    assert [s.args for s in p.body] == [(Var("g"), Const(-2.5)), (Var("a"), Const(3.0)), (Var("a"), Var("g"))]


def test_docstrings_comments_and_blank_lines_are_ignored():
    p = parse('''
        """A module docstring."""

        def f(w, g, lr):
            """A function docstring."""
            # a comment
            u = g * lr  # another

            return u
    ''')
    assert p.body == (Statement("u", "mul", (Var("g"), Var("lr"))),)


def test_zoo_programs_parse_and_check():
    for name in zoo_names():
        p = load_zoo(name)
        assert p.name == name and p.returns[1:] == p.state


def test_validate_false_skips_the_check():
    text = "def f(w, g, lr):\n    u = ghost * lr\n    return u\n"
    assert parse_program(text, validate=False).body[0].args == (Var("ghost"), Var("lr"))
    with pytest.raises(ProgramError, match="'ghost' is used before it is defined"):
        parse_program(text)


BAD_PROGRAMS = [
    # (id, text, line, fragment of the message)
    ("syntax error", "def f(w, g, lr):\n    u = g *\n    return u\n", 2, "syntax error"),
    ("unknown op", "def f(w, g, lr):\n    u = sgn(g)\n    return u\n", 2, "unknown op 'sgn' (did you mean 'sign'"),
    ("wrong arity", "def f(w, g, lr):\n    u = interp(g, w)\n    return u\n", 2, "takes 3 arguments, got 2"),
    ("undefined variable", "def f(w, g, lr):\n    u = g * lr\n    u = u * mom\n    return u\n", 3,
     "'mom' is used before it is defined"),
    ("attribute access", "def f(w, g, lr):\n    u = g.abs()\n    return u\n", 2, "attribute access"),
    ("module call", "def f(w, g, lr):\n    u = torch.sign(g)\n    return u\n", 2, "attribute access"),
    ("import at top", "import os\ndef f(w, g, lr):\n    return g\n", 1, "imports"),
    ("import inside", "def f(w, g, lr):\n    import os\n    return g\n", 2, "imports"),
    ("open call", "def f(w, g, lr):\n    u = open('/etc/passwd')\n    return u\n", 2, "unknown op 'open'"),
    ("scalar update", "def f(w, g, lr):\n    u = norm(g)\n    return u\n", 3, "the update must be a tensor"),
    ("missing state return", "def f(w, g, lr, m):\n    m = m + g\n    return m\n", 3,
     "return (update, *state) = (update, m): 2 values, got 1"),
    ("decorator", "@staticmethod\ndef f(w, g, lr):\n    return g\n", 1, "decorators"),
    ("default", "def f(w, g, lr, m=0.9):\n    return g, m\n", 1, "no defaults"),
    ("loop", "def f(w, g, lr):\n    for i in range(3):\n        g = g * 2\n    return g\n", 2, "loops"),
    ("if", "def f(w, g, lr):\n    if lr:\n        g = g * 2\n    return g\n", 2, "if statements"),
    ("comparison", "def f(w, g, lr):\n    u = g > w\n    return u\n", 2, "comparisons"),
    ("power operator", "def f(w, g, lr):\n    u = g ** 2\n    return u\n", 2, "power(x, y)"),
    ("augmented power", "def f(w, g, lr):\n    g **= 2\n    return g\n", 2, "power(x, y)"),
    ("copy", "def f(w, g, lr):\n    u = g\n    return u\n", 2, "must apply an op"),
    ("keyword argument", "def f(w, g, lr):\n    u = clip(g, c=1.0)\n    return u\n", 2, "positional"),
    ("infix op as call", "def f(w, g, lr):\n    u = add(g, w)\n    return u\n", 2, "write add as `x + y`"),
    ("string constant", "def f(w, g, lr):\n    u = g * 'a'\n    return u\n", 2, "constants must be numbers"),
    ("huge constant", "def f(w, g, lr):\n    u = g * 1e999\n    return u\n", 2, "finite"),
    ("huge integer", "def f(w, g, lr):\n    u = g * " + "9" * 400 + "\n    return u\n", 2, "finite"),
    ("missing input", "def f(w, lr, m):\n    return m, m\n", 1, "missing g"),
    ("duplicate parameter", "def f(w, g, lr, w):\n    return g\n", 1, "duplicate"),
    ("no return", "def f(w, g, lr):\n    u = g * lr\n", 1, "must end with `return"),
    ("return in the middle", "def f(w, g, lr):\n    return g\n    u = g * lr\n    return u\n", 2, "last statement"),
    ("constant return", "def f(w, g, lr):\n    return 1.0\n", 2, "not constants"),
    ("two functions", "def f(w, g, lr):\n    return g\ndef h(w, g, lr):\n    return g\n", 3, "exactly one function"),
    ("no function", '"""only a docstring"""\n', 1, "no function definition"),
    ("tuple target", "def f(w, g, lr):\n    a, b = g, w\n    return a\n", 2, "one plain variable"),
    ("bare call", "def f(w, g, lr):\n    sign(g)\n    return g\n", 2, "has no effect"),
    ("lambda", "def f(w, g, lr):\n    u = (lambda: g)()\n    return g\n", 2, "lambdas"),
]


@pytest.mark.parametrize("text, line, fragment", [b[1:] for b in BAD_PROGRAMS], ids=[b[0] for b in BAD_PROGRAMS])
def test_bad_program_text_raises_program_error_with_path_and_line(text, line, fragment):
    with pytest.raises(ProgramError) as info:
        parse_program(text, path="bad.py")
    err = info.value
    assert (err.path, err.line) == ("bad.py", line)
    assert fragment in err.message
    assert str(err).startswith(f"bad.py:{line}: ")


@pytest.mark.parametrize("data, line, fragment", [
    (b"", 1, "empty program"),
    (b"  \n\n", 1, "empty program"),
    (b"\x7fELF\x02\x01\x00\x00", 1, "binary"),
    (b"def f(w, g, lr):\n    return g\n\xff\xfe\n", 3, "not UTF-8"),
], ids=["empty", "blank", "binary", "latin1"])
def test_empty_and_binary_files_are_rejected(tmp_path, data, line, fragment):
    path = tmp_path / "prog.py"
    path.write_bytes(data)
    with pytest.raises(ProgramError) as info:
        load_program(path)
    assert (info.value.path, info.value.line) == (str(path), line)
    assert fragment in info.value.message


def test_a_missing_file_is_a_program_error(tmp_path):
    with pytest.raises(ProgramError, match="cannot read program file"):
        load_program(tmp_path / "nope.py")


def test_load_program_names_the_file_in_analysis_errors(tmp_path):
    path = tmp_path / "prog.py"
    path.write_text("def f(w, g, lr):\n    n = norm(lr)\n    return g\n")
    with pytest.raises(ProgramError) as info:
        load_program(path)
    assert str(info.value).startswith(f"{path}:2: norm() needs a tensor")


@pytest.mark.parametrize("template", [
    "def f(w, g, lr):\n    __import__('os').system('touch {file}')\n    return g\n",
    "def f(w, g, lr):\n    u = __import__('os').system('touch {file}')\n    return g\n",
    "def f(w, g, lr, m=__import__('os').system('touch {file}')):\n    return g, m\n",
    "@__import__('os').system('touch {file}')\ndef f(w, g, lr):\n    return g\n",
    "__import__('os').system('touch {file}')\ndef f(w, g, lr):\n    return g\n",
    "def f(w, g, lr) -> __import__('os').system('touch {file}'):\n    return g\n",
], ids=["statement", "assignment", "default", "decorator", "top level", "annotation"])
def test_parsing_never_executes_the_text(tmp_path, template):
    marker = tmp_path / "EXECUTED"
    path = tmp_path / "evil.py"
    path.write_text(template.format(file=marker))
    with pytest.raises(ProgramError) as info:
        load_program(path)
    assert info.value.path == str(path) and info.value.line
    assert not marker.exists()


@pytest.mark.parametrize("value", [0.0, 0.5, -0.5])
def test_neg_of_a_constant_prints_and_parses_back(value):
    base = parse_program("def f(w, g, lr):\n    a = g * 2.0\n    u = a * lr\n    return u\n")
    program = replace(base, body=(Statement("c", "neg", (Const(value),), 2), *base.body))
    text = print_program(program)
    again = parse_program(text)
    assert again.body[0].op == "neg" and repr(again.body[0].args[0].value) == repr(value)
    assert print_program(again) == text
