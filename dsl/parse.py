"""Program text -> IR, with `ast`. The text is never executed as Python.

Nested expressions are flattened into temporaries (`t1`, `t2`, ...), so any readable
formula is accepted while the IR keeps one op per statement.
"""
from __future__ import annotations

import ast
import math
from pathlib import Path

from optsearch.dsl.analysis import check
from optsearch.dsl.errors import ProgramError
from optsearch.dsl.ir import REQUIRED_INPUTS, Const, Operand, Program, Statement, Var
from optsearch.dsl.ops import BINARY_SYMBOLS, OPS, unknown_op_message

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_FORBIDDEN = {  # node type -> what to call it in an error
    ast.Attribute: "attribute access", ast.Subscript: "subscripts", ast.Import: "imports",
    ast.ImportFrom: "imports", ast.Lambda: "lambdas", ast.If: "if statements",
    ast.IfExp: "conditional expressions", ast.For: "loops", ast.While: "loops",
    ast.With: "with statements", ast.ClassDef: "classes", ast.Global: "global statements",
    ast.Nonlocal: "nonlocal statements", ast.Delete: "del statements", ast.Try: "try statements",
    ast.Raise: "raise statements", ast.Assert: "assert statements", ast.Compare: "comparisons",
    ast.BoolOp: "boolean operators", ast.ListComp: "comprehensions", ast.GeneratorExp: "generators",
    ast.List: "lists", ast.Dict: "dicts", ast.Set: "sets", ast.JoinedStr: "f-strings",
    ast.Await: "await", ast.Yield: "yield", ast.Starred: "star arguments",
    ast.AsyncFunctionDef: "async functions", ast.NamedExpr: "walrus assignments",
}


def parse_program(text: str | bytes, path: str | None = None, *, validate: bool = True) -> Program:
    """Parse one program; raises `ProgramError(path, line, cause)` for anything not accepted.

    With `validate` (the default) the program is also checked (`analysis.check`): types,
    arity, use before definition, the returned `(update, *state)`.
    """
    program = _Parser(path).parse(text)
    if validate:
        check(program, path)
    return program


def load_program(path: str | Path, *, validate: bool = True) -> Program:
    """Read and parse a program file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ProgramError(f"cannot read program file: {e.strerror or e}", str(path)) from None
    return parse_program(data, str(path), validate=validate)


def module_statements(text: str | bytes, path: str | None = None) -> list[ast.stmt]:
    """The top-level statements of a program file (for files of several functions, `dsl.roles`);
    raises `ProgramError` for text that is not UTF-8, binary, empty or not Python syntax."""
    return _Parser(path).module(text)


def parse_function(fn: ast.FunctionDef, path: str | None = None, *, validate: bool = True) -> Program:
    """One function of a parsed file as a program, checked as `parse_program` checks it."""
    program = _Parser(path).function(fn)
    if validate:
        check(program, path)
    return program


def describe(node: ast.AST) -> str:
    """What to call a syntax node in an error ("imports", "a call", ...)."""
    return _describe(node)


class _Parser:
    def __init__(self, path: str | None):
        self.path = path
        self.body: list[Statement] = []
        self.names: set[str] = set()
        self.temp = 0

    def error(self, node: ast.AST | None, message: str) -> ProgramError:
        """An error at `node`'s line; errors about the whole text point at line 1."""
        return ProgramError(message, self.path, getattr(node, "lineno", None) or 1)

    def parse(self, text: str | bytes) -> Program:
        stmts = self.module(text)
        funcs = [s for s in stmts if isinstance(s, ast.FunctionDef)]
        for s in stmts:
            if not isinstance(s, ast.FunctionDef):
                raise self.error(s, f"only one function definition is allowed at top level, found {_describe(s)}")
        if len(funcs) != 1:
            raise self.error(funcs[1] if funcs else None,
                             "a program file holds exactly one function" if funcs else "no function definition found")
        return self.function(funcs[0])

    def module(self, text: str | bytes) -> list[ast.stmt]:
        """The top-level statements of `text` (a leading docstring dropped); errors for text that
        is not UTF-8, binary, empty or not Python syntax."""
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as e:
                line = text[:e.start].count(b"\n") + 1
                raise ProgramError("not a program: the file is not UTF-8 text", self.path, line) from None
        if "\x00" in text:
            raise ProgramError("not a program: the file is binary", self.path, text[:text.index("\x00")].count("\n") + 1)
        if not text.strip():
            raise self.error(None, "empty program: expected one `def name(w, g, lr, ...):` function")
        try:
            module = ast.parse(text)
        except SyntaxError as e:
            raise ProgramError(f"syntax error: {e.msg}", self.path, e.lineno or 1) from None
        stmts = list(module.body)
        return stmts[1:] if stmts and _is_docstring(stmts[0]) else stmts

    def function(self, fn: ast.FunctionDef) -> Program:
        a = fn.args
        if fn.decorator_list:
            raise self.error(fn.decorator_list[0], "decorators are not allowed")
        if a.vararg or a.kwarg or a.kwonlyargs or a.posonlyargs or a.defaults or a.kw_defaults:
            raise self.error(fn, "parameters must be plain names (no defaults, *args or keyword-only)")
        if fn.returns is not None or any(p.annotation is not None for p in a.args):
            raise self.error(fn, "type annotations are not allowed")
        params = tuple(p.arg for p in a.args)
        if len(set(params)) != len(params):
            raise self.error(fn, "duplicate parameter name")
        missing = [p for p in REQUIRED_INPUTS if p not in params]
        if missing:
            raise self.error(fn, f"the signature needs the inputs {', '.join(REQUIRED_INPUTS)}; missing {', '.join(missing)}")
        self.names = set(params) | {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}
        stmts = list(fn.body)
        if stmts and _is_docstring(stmts[0]):
            stmts = stmts[1:]
        if not stmts or not isinstance(stmts[-1], ast.Return):
            raise self.error(fn, "the function must end with `return update, *state`")
        for s in stmts[:-1]:
            self.statement(s)
        returns, ret = self.returns(stmts[-1])
        return Program(fn.name, params, tuple(self.body), returns, ret.lineno)

    def statement(self, s: ast.stmt) -> None:
        if isinstance(s, ast.Assign):
            if len(s.targets) != 1 or not isinstance(s.targets[0], ast.Name):
                raise self.error(s, "assign to exactly one plain variable name")
            self.assign(s.targets[0].id, s.value, s.lineno)
        elif isinstance(s, ast.AugAssign):
            if not isinstance(s.target, ast.Name):
                raise self.error(s, "assign to exactly one plain variable name")
            name = s.target.id
            op = self.binop(s, s.op)
            self.body.append(Statement(name, op, (Var(name), self.operand(s.value)), s.lineno))
        elif isinstance(s, ast.Return):
            raise self.error(s, "`return` must be the last statement")
        elif isinstance(s, ast.Expr) and isinstance(s.value, ast.Call):
            raise self.error(s, "a call whose result is not assigned has no effect; write `x = op(...)`")
        else:
            raise self.error(s, f"unsupported statement: {_describe(s)}")

    def assign(self, target: str, value: ast.expr, line: int) -> None:
        """`target = value`, flattening nested sub-expressions of `value` first."""
        value = _strip_plus(value)
        if isinstance(value, (ast.Name, ast.Constant)):
            raise self.error(value, "a statement must apply an op; to copy a variable just use its name")
        if _is_negative_literal(value):  # `x = -0.5` applies neg to 0.5: how `neg` of a constant prints
            self.body.append(Statement(target, "neg", (Const(self.number(value.operand)),), line))
            return
        op, args = self.call(value)
        self.body.append(Statement(target, op, args, line))

    def binop(self, node: ast.AST, op: ast.operator) -> str:
        if type(op) not in _BINOPS:
            raise self.error(node, f"unsupported operator {type(op).__name__}; use + - * / or an op such as power(x, y)")
        return BINARY_SYMBOLS[_BINOPS[type(op)]]

    def call(self, e: ast.expr) -> tuple[str, tuple[Operand, ...]]:
        if isinstance(e, ast.BinOp):
            op = self.binop(e, e.op)
            return op, (self.operand(e.left), self.operand(e.right))
        if isinstance(e, ast.UnaryOp):
            if isinstance(e.op, ast.USub):
                return "neg", (self.operand(e.operand),)
            raise self.error(e, f"unsupported unary operator {type(e.op).__name__}")
        if isinstance(e, ast.Call):
            if not isinstance(e.func, ast.Name):
                raise self.error(e, f"calls must name an op directly, found {_describe(e.func)}")
            name = e.func.id
            if name not in OPS:
                raise self.error(e, unknown_op_message(name))
            if e.keywords:
                raise self.error(e, f"{name}(...) takes positional arguments only")
            op = OPS[name]
            if op.symbol:
                raise self.error(e, f"write {op.name} as `{op.signature}`, not as a call")
            if len(e.args) != op.arity:
                raise self.error(e, f"{op.signature} takes {op.arity} argument{'s' * (op.arity != 1)}, got {len(e.args)}")
            return name, tuple(self.operand(a) for a in e.args)
        raise self.error(e, f"unsupported expression: {_describe(e)}")

    def operand(self, e: ast.expr) -> Operand:
        e = _strip_plus(e)
        if isinstance(e, ast.Name):
            return Var(e.id)
        if isinstance(e, ast.Constant) or _is_negative_literal(e):
            return Const(self.number(e))
        return Var(self.temporary(e))

    def temporary(self, e: ast.expr) -> str:
        """Flatten `e` into a fresh temporary; inner temporaries are emitted (and numbered) first."""
        op, args = self.call(e)
        name = self.fresh()
        self.body.append(Statement(name, op, args, e.lineno))
        return name

    def number(self, e: ast.expr) -> float:
        sign = 1.0
        if isinstance(e, ast.UnaryOp):
            sign, e = (-1.0 if isinstance(e.op, ast.USub) else 1.0), e.operand
        v = e.value  # type: ignore[attr-defined]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.error(e, f"constants must be numbers, found {v!r}")
        try:
            v = sign * float(v)
        except OverflowError:
            v = math.inf
        if not math.isfinite(v):
            raise self.error(e, f"constants must be finite, found {v}")
        return v

    def fresh(self) -> str:
        while True:
            self.temp += 1
            name = f"t{self.temp}"
            if name not in self.names:
                self.names.add(name)
                return name

    def returns(self, r: ast.Return) -> tuple[tuple[str, ...], ast.Return]:
        if r.value is None:
            raise self.error(r, "return the update and the new state: `return update, *state`")
        items = r.value.elts if isinstance(r.value, ast.Tuple) else [r.value]
        out = []
        for e in items:
            e = _strip_plus(e)
            if isinstance(e, ast.Name):
                out.append(e.id)
            elif isinstance(e, ast.Constant) or _is_negative_literal(e):
                raise self.error(e, "return variables, not constants")
            else:
                out.append(self.temporary(e))
        return tuple(out), r


def _is_docstring(s: ast.stmt) -> bool:
    return isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and isinstance(s.value.value, str)


def _is_negative_literal(e: ast.expr) -> bool:
    return isinstance(e, ast.UnaryOp) and isinstance(e.op, (ast.USub, ast.UAdd)) and isinstance(e.operand, ast.Constant)


def _strip_plus(e: ast.expr) -> ast.expr:
    """`+x` is `x` (but `+1.0` stays a literal, so its sign is read by `number`)."""
    while isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.UAdd) and not isinstance(e.operand, ast.Constant):
        e = e.operand
    return e


def _describe(node: ast.AST) -> str:
    for kind, what in _FORBIDDEN.items():
        if isinstance(node, kind):
            return what
    if isinstance(node, ast.Call):
        return "a call"
    return type(node).__name__
