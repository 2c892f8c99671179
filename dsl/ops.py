"""The op registry: the one place an op is declared.

Each `Op` carries what every consumer needs: its name and argument names (arity), argument
and result types, a torch implementation, the expression an exported optimizer uses, and
algebraic facts for analysis and the rewrite rules (commutative, idempotent, the result's sign,
linearity, elementwise or not). Adding an op is one `_register` call.

Types: `tensor` values are shaped like the parameter; `scalar` values are one number per
parameter tensor (or per run: `lr`, `step`, constants, `global_norm`). Elementwise ops accept
both and give a tensor if any argument is one; reductions take tensors and give scalars.
Factor ops (row and col values) and matrix ops (each parameter seen as a matrix: Newton-Schulz for
Muon) are described where they are registered, at the end of the file. An argument of type `const`
must be a number written in the program.
Ops have plain IEEE semantics: no hidden epsilons, so `sqrt(-1)` is NaN and `1 / 0` is inf.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable, Literal, Optional, Protocol, Sequence

import torch
from torch import Tensor

Kind = Literal["elementwise", "reduction", "global", "factor", "matrix"]
ArgType = Literal["tensor", "any", "const"]
Sign = Optional[Literal["positive", "nonneg"]]
"""What is known of a value's sign: `positive` (> 0 wherever it is finite: `exp` may underflow to 0,
`sqrt` of a negative is NaN, the usual reading of `sqrt(v) + eps > 0`), `nonneg` (>= 0), or None."""
SignRule = Callable[[tuple[Sign, ...], tuple[Optional[float], ...]], Sign]
"""An op's result sign from its arguments' signs and values (None where an argument is not a constant)."""


class Reducer(Protocol):
    """How reductions see the parameters; supplied by the interpreter (or the exporter)."""

    def sum(self, x: Tensor) -> Tensor:
        """Sum over each parameter tensor, broadcastable against `x`."""

    def amax(self, x: Tensor) -> Tensor:
        """Maximum over each parameter tensor, broadcastable against `x`."""

    def count(self) -> Tensor:
        """Number of elements of each parameter tensor, broadcastable against `x`."""

    def global_sum(self, x: Tensor) -> Tensor:
        """Sum over all parameter tensors at once, broadcastable against `x`."""

    def row_mean(self, x: Tensor) -> Tensor:
        """The mean of each row of each parameter tensor of `x` (seen as a matrix): a row value."""

    def col_mean(self, x: Tensor) -> Tensor:
        """The mean of each column of each parameter tensor of `x`: a col value."""

    def matrices(self, fn: Callable[..., Tensor], *xs: Tensor) -> Tensor:
        """`fn` applied to each parameter's matrix view of `xs` (each a batch `(..., m, n)` of one
        shape at a time), the results put back where the parameters are."""

    def matrix_rows(self) -> Tensor:
        """The row count of each parameter's matrix view, broadcastable against `x`."""

    def matrix_cols(self) -> Tensor:
        """The column count of each parameter's matrix view, broadcastable against `x`."""


@dataclass(frozen=True)
class Op:
    """One op of the language.

    `impl` takes torch tensors (constants arrive as 0-d tensors) and broadcasts; reductions
    take a `Reducer` first. `expr` is the same computation as a Python expression over one
    parameter's tensors (`{0}`, `{1}`, ... are the arguments), used by the exporter; for a
    `global` op `{0}` is the list of all parameters' tensors.

    Optional, for readable and fast exports (the exporter is correct without them):
    `number_args` are the argument positions where `expr` also accepts a Python number when
    another argument is a tensor (elsewhere the exporter passes a 0-d tensor). `foreach` is
    the op over lists of tensors, one `torch._foreach_*` call whose first argument `{0}` is a
    list; the same call with `_` appended to the function name must overwrite `{0}` in place (a matrix
    op's `foreach` is a runtime helper over lists instead, never called in place).
    Other arguments must be lists too, except at the `foreach_scalars` positions, which also
    take a number, a list of numbers or a list of 0-d tensors (one per tensor).
    `coefficient_args` are the positions that usually hold a constant (an interpolation weight,
    a beta): a search's mutations fill them with constants (search/mutate.py). `defaults` are
    `(position, value)` pairs a mutation writes when it makes a new statement of the op, where a
    constant drawn from the pool would be meaningless (Newton-Schulz coefficients); mutations
    leave them alone afterwards (a program may still be written with other values).

    Algebraic facts, sound but not always complete (a fact left out only makes rules fire less):
    `sign` gives the result's sign from the arguments' (None: nothing known). `linear` lists groups
    of argument positions the result is affine in, jointly, while the other arguments are held
    fixed: `mul` is linear in each argument alone, `interp` in its two ends together. `shape_only`: the
    result depends on the argument's shape alone (`rows`, `cols`), so it is a constant of each parameter.
    """

    name: str
    args: tuple[str, ...]
    kind: Kind
    impl: Callable[..., Tensor]
    expr: str
    summary: str
    symbol: str | None = None
    arg_types: tuple[ArgType, ...] | None = None
    commutative: bool = False
    idempotent: bool = False
    number_args: tuple[int, ...] = ()
    foreach: str | None = None
    foreach_scalars: tuple[int, ...] = ()
    coefficient_args: tuple[int, ...] = ()
    defaults: tuple[tuple[int, float], ...] = ()
    result: str | None = None  # the result type of a `factor` op ("row" or "col") or a `matrix` op; see the end of the file
    sign: SignRule | None = None
    linear: tuple[tuple[int, ...], ...] = ()
    shape_only: bool = False  # the result depends on its argument's shape, not its values (rows, cols)

    @property
    def arity(self) -> int:
        return len(self.args)

    @property
    def free_arity(self) -> int:
        """The arguments a new statement of the op needs besides its `defaults`: 1 for `sign`, and
        for `orthogonalize`, whose coefficients a mutation writes from its defaults."""
        return self.arity - len(self.defaults)

    @property
    def result_type(self) -> str:
        return self.result or ("scalar" if self.kind != "elementwise" else "auto")

    @property
    def signature(self) -> str:
        if self.symbol == "-" and self.arity == 1:
            return "-x"
        if self.symbol:
            return f"x {self.symbol} y"
        return f"{self.name}({', '.join(self.args)})"

    @property
    def elementwise(self) -> bool:
        return self.kind == "elementwise"

    def types(self) -> tuple[ArgType, ...]:
        if self.arg_types is not None:
            return self.arg_types
        return ("tensor",) * self.arity if self.kind != "elementwise" else ("any",) * self.arity

    def result_sign(self, signs: Sequence[Sign], values: Sequence[float | None]) -> Sign:
        """The result's sign, given each argument's and the values of the constant ones."""
        return self.sign(tuple(signs), tuple(values)) if self.sign else None

    def affine_in(self, moving: Sequence[bool], scalar: Sequence[bool] | None = None) -> bool:
        """Whether the result is affine in the arguments marked `moving`, the others held fixed: then
        a sum of parts from two sources (the gradient's and `w`'s) stays such a sum through the op.

        With `scalar` (which arguments are scalars), the fixed arguments that scale the moving ones
        (those outside their linear group: `mul`'s other factor, `interp`'s weight) must be scalars,
        so that the result is a moving part times one number per tensor, plus fixed terms.
        """
        at = {k for k, m in enumerate(moving) if m}
        group = next((set(g) for g in self.linear if at <= set(g)), None)
        if group is None:
            return False
        return scalar is None or all(scalar[k] for k in range(self.arity) if k not in group)


OPS: dict[str, Op] = {}
BINARY_SYMBOLS: dict[str, str] = {}  # '+' -> 'add', ...


def _register(op: Op) -> None:
    assert op.name not in OPS, f"op {op.name!r} registered twice"
    OPS[op.name] = op
    if op.symbol and op.arity == 2:
        BINARY_SYMBOLS[op.symbol] = op.name


def get_op(name: str) -> Op:
    """The op called `name`; a `KeyError` whose text suggests the closest names."""
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(unknown_op_message(name)) from None


def unknown_op_message(name: str) -> str:
    close = difflib.get_close_matches(name, list(OPS), n=2)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return f"unknown op {name!r}{hint}; `optsearch ops` lists them"


# Sign rules (see `Sign`).
def _known(positive: bool, nonneg: bool) -> Sign:
    return "positive" if positive else "nonneg" if nonneg else None


def _always_nonneg(s, v) -> Sign:
    return "nonneg"


def _always_positive(s, v) -> Sign:
    return "positive"


def _nonneg_positive_if_x_is(s, v) -> Sign:  # square, sqrt
    return _known(s[0] == "positive", True)


def _like_x(s, v) -> Sign:  # 1 / x and means keep x's sign
    return s[0]


def _positive_if_x_is(s, v) -> Sign:  # x ** y
    return "positive" if s[0] == "positive" else None


def _sum_sign(s, v) -> Sign:
    nonneg = s[0] is not None and s[1] is not None
    return _known(nonneg and "positive" in s, nonneg)


def _product_sign(s, v) -> Sign:  # x * y, min(x, y)
    return _known(s[0] == s[1] == "positive", s[0] is not None and s[1] is not None)


def _quotient_sign(s, v) -> Sign:
    return _known(s[0] == s[1] == "positive", s[0] is not None and s[1] == "positive")


def _maximum_sign(s, v) -> Sign:
    return _known("positive" in s, s[0] is not None or s[1] is not None)


def _interp_sign(s, v) -> Sign:  # a weighted mean of x and y for a constant weight in [0, 1]
    if v[2] is None or not 0 <= v[2] <= 1:
        return None
    return _known(s[0] == s[1] == "positive", s[0] is not None and s[1] is not None)


def _bias_correct_sign(s, v) -> Sign:  # 1 / (1 - beta ** step) > 0 for a constant beta in (0, 1), step > 0
    return s[0] if v[1] is not None and 0 < v[1] < 1 and s[2] == "positive" else None


def _ew(name, args, impl, expr, summary, **kw) -> None:
    _register(Op(name, tuple(args.split()), "elementwise", impl, expr, summary, **kw))


def _red(name, args, impl, expr, summary, kind: Kind = "reduction", **kw) -> None:
    _register(Op(name, tuple(args.split()), kind, impl, expr, summary, **kw))


# Arithmetic (written infix in programs).
_BIN = dict(number_args=(0, 1), foreach_scalars=(1,))
_ew("add", "x y", torch.add, "({0} + {1})", "x + y", symbol="+", commutative=True,
    foreach="torch._foreach_add({0}, {1})", sign=_sum_sign, linear=((0, 1),), **_BIN)
_ew("sub", "x y", torch.sub, "({0} - {1})", "x - y", symbol="-", foreach="torch._foreach_sub({0}, {1})",
    linear=((0, 1),), **_BIN)
_ew("mul", "x y", torch.mul, "({0} * {1})", "x * y", symbol="*", commutative=True,
    foreach="torch._foreach_mul({0}, {1})", sign=_product_sign, linear=((0,), (1,)), **_BIN)
_ew("div", "x y", torch.div, "({0} / {1})", "x / y (IEEE: x / 0 is +-inf or nan)", symbol="/",
    foreach="torch._foreach_div({0}, {1})", sign=_quotient_sign, linear=((0,),), **_BIN)
_ew("neg", "x", torch.neg, "(-{0})", "-x", symbol="-", number_args=(0,), foreach="torch._foreach_neg({0})",
    linear=((0,),))

# Elementwise functions.
_ew("abs", "x", torch.abs, "torch.abs({0})", "|x|", idempotent=True, foreach="torch._foreach_abs({0})",
    sign=_always_nonneg)
_ew("sign", "x", torch.sign, "torch.sign({0})", "-1, 0 or 1", idempotent=True, foreach="torch._foreach_sign({0})")
_ew("sqrt", "x", torch.sqrt, "torch.sqrt({0})", "square root (nan below 0)", foreach="torch._foreach_sqrt({0})",
    sign=_nonneg_positive_if_x_is)
_ew("square", "x", torch.square, "torch.square({0})", "x * x", foreach="torch._foreach_mul({0}, {0})",
    sign=_nonneg_positive_if_x_is)
_ew("exp", "x", torch.exp, "torch.exp({0})", "e ** x", foreach="torch._foreach_exp({0})", sign=_always_positive)
_ew("log", "x", torch.log, "torch.log({0})", "natural log (nan below 0, -inf at 0)",
    foreach="torch._foreach_log({0})")
_ew("tanh", "x", torch.tanh, "torch.tanh({0})", "hyperbolic tangent", foreach="torch._foreach_tanh({0})")
_ew("arctan", "x", torch.atan, "torch.atan({0})", "inverse tangent", foreach="torch._foreach_atan({0})")
_ew("sin", "x", torch.sin, "torch.sin({0})", "sine", foreach="torch._foreach_sin({0})")
_ew("cos", "x", torch.cos, "torch.cos({0})", "cosine", foreach="torch._foreach_cos({0})")
_ew("relu", "x", torch.relu, "torch.relu({0})", "max(x, 0)", idempotent=True,
    foreach="torch._foreach_clamp_min({0}, 0.0)", sign=_always_nonneg)
_ew("reciprocal", "x", torch.reciprocal, "torch.reciprocal({0})", "1 / x", foreach="torch._foreach_reciprocal({0})",
    sign=_like_x)
_ew("maximum", "x y", torch.maximum, "torch.maximum({0}, {1})", "elementwise max", commutative=True,
    foreach="torch._foreach_maximum({0}, {1})", foreach_scalars=(1,), sign=_maximum_sign)
_ew("minimum", "x y", torch.minimum, "torch.minimum({0}, {1})", "elementwise min", commutative=True,
    foreach="torch._foreach_minimum({0}, {1})", foreach_scalars=(1,), sign=_product_sign)
_ew("power", "x y", torch.pow, "torch.pow({0}, {1})", "x ** y", number_args=(0, 1),
    foreach="torch._foreach_pow({0}, {1})", foreach_scalars=(1,), sign=_positive_if_x_is)
_ew("interp", "x y a", torch.lerp,
    "torch.lerp({0}, {1}, {2})", "(1 - a) * x + a * y (an exponential moving average)", number_args=(2,),
    coefficient_args=(2,),
    foreach="torch._foreach_lerp({0}, {1}, {2})", foreach_scalars=(2,), sign=_interp_sign,
    linear=((0, 1),))
_ew("bias_correct", "x beta step", lambda x, b, s: x / (1 - torch.pow(b, s)),
    "({0} / (1 - {1} ** {2}))", "x / (1 - beta ** step) (Adam's bias correction)", number_args=(1,),
    coefficient_args=(1,), sign=_bias_correct_sign, linear=((0,),))
_ew("clip", "x c", lambda x, c: torch.minimum(torch.maximum(x, -c), c),
    "torch.minimum(torch.maximum({0}, -{1}), {1})", "x clipped to [-c, c]")

# Lion-kappa: Lion with `sign` replaced by the gradient of another convex kappa. With
# `tanh` (kappa = log cosh), `clip` (Huber), `x / rms(x)` (a scaled L2 norm) the family was
# already expressible; softsign is the gradient of kappa(x) = |x| - log(1 + |x|).
_ew("softsign", "x", torch.nn.functional.softsign, "torch.nn.functional.softsign({0})",
    "x / (1 + |x|), a smooth sign (the gradient of |x| - log(1 + |x|))")

# Reductions: one scalar per parameter tensor.
_red("norm", "x", lambda r, x: torch.sqrt(r.sum(x * x)),
     "torch.linalg.vector_norm({0})", "L2 norm of the parameter tensor", foreach="torch._foreach_norm({0})",
     sign=_always_nonneg)
_red("rms", "x", lambda r, x: torch.sqrt(r.sum(x * x) / r.count()),
     "torch.sqrt(torch.mean({0} * {0}))", "root mean square over the parameter tensor", sign=_always_nonneg)
_red("mean", "x", lambda r, x: r.sum(x) / r.count(), "torch.mean({0})", "mean over the parameter tensor",
     sign=_like_x, linear=((0,),))
_red("abs_mean", "x", lambda r, x: r.sum(torch.abs(x)) / r.count(),
     "torch.mean(torch.abs({0}))", "mean of |x| over the parameter tensor", sign=_always_nonneg)
_red("max_abs", "x", lambda r, x: r.amax(torch.abs(x)),
     "torch.amax(torch.abs({0}))", "max of |x| over the parameter tensor", sign=_always_nonneg)
_red("dot", "x y", lambda r, x, y: r.sum(x * y), "torch.sum({0} * {1})",
     "inner product over the parameter tensor", commutative=True,
     linear=((0,), (1,)))

# Global reductions: one scalar over all parameters at once.
_red("global_norm", "x", lambda r, x: torch.sqrt(r.global_sum(x * x)),
     "torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in {0}]))",
     "L2 norm over all parameters together", kind="global", sign=_always_nonneg)
_red("global_sum", "x", lambda r, x: r.global_sum(x),
     "torch.sum(torch.stack([torch.sum(t) for t in {0}]))",
     "sum over all parameters together (signed: Prodigy's inner products of g and w0 - w)", kind="global",
     sign=_like_x, linear=((0,),))


# ---------------------------------------------------------------------------------------------
# Factored state: ops over a parameter's rows and columns, so that a program can keep
# state smaller than the parameter, as Adafactor and H-Fac do. Every parameter is seen as a matrix
# (shape[0], prod(shape[1:])): a vector (n,) as one row (1, n), a 0-d tensor as (1, 1). Two more
# types sit beside `tensor` and `scalar`: a `row` holds one value per row (m values), a `col` one
# per column (n values). Elementwise ops broadcast like numpy with a row as an (m, 1) and a col as
# a (1, n) array: row with row (or a scalar) gives a row, row with col or with a tensor gives a
# tensor (so `r * c` is the outer product). Reductions and `global_norm` accept rows and cols too;
# `row_mean` and `col_mean` need a tensor. A state variable has the type of the value it returns
# as, and is stored with that shape. The interpreter keeps rows and cols in flat `(*batch, R)` and
# `(*batch, C)` buffers beside the `(*batch, N)` one; an exported optimizer keeps a row as a tensor
# of shape (shape[0], 1, ..., 1) and a col as one of shape (1, *shape[1:]) (a vector's col is shaped
# like it), so that torch's broadcasting computes the same thing. `_row_mean` and `_col_mean` are
# helpers the exporter writes into the module.


_register(Op("row_mean", ("x",), "factor", lambda r, x: r.row_mean(x), "_row_mean({0})",
             "mean of each row of x (seen as a matrix shape[0] x rest): a row", result="row",
             sign=_like_x, linear=((0,),)))
_register(Op("col_mean", ("x",), "factor", lambda r, x: r.col_mean(x), "_col_mean({0})",
             "mean of each column of x (seen as a matrix shape[0] x rest): a col", result="col",
             sign=_like_x, linear=((0,),)))


# ---------------------------------------------------------------------------------------------
# Matrix ops: ops over each parameter's matrix view (`shape[0]` x the rest, as row and col values
# see it; a vector is one row 1 x n, a 0-d tensor 1 x 1), for Newton-Schulz orthogonalization (Muon).
# They are not elementwise: an element of the result depends on its whole parameter. Their tensor
# arguments must be tensors (a row, a col or a scalar is a type error), and arguments of type
# `const` must be constants written in the program (they arrive in `impl` as Python floats), so
# that the interpreter can run one batched matmul chain per parameter shape for all copies at once.
# `impl` takes the `Reducer` first; the per-matrix math is `gram_mul_matrices` and
# `orthogonalize_matrices` below, over batches of matrices `(..., m, n)`. An exported optimizer
# calls `expr` per parameter and, on its foreach path, `foreach`: a function over lists that stacks
# the parameters of one matrix shape into one batch (never written in place; dsl/export/runtime.py).

NS_MAX_STEPS = 10
"""The most Newton-Schulz iterations `orthogonalize` runs (its `steps` is clamped to 1..10)."""


def gram_mul_matrices(x: Tensor, y: Tensor) -> Tensor:
    """`(x x^T) y` for batches of m x n matrices; computed as `x (x^T y)` when m > n (the same
    number, up to rounding, with an n x n product instead of an m x m one)."""
    if x.shape[-2] > x.shape[-1]:
        return x @ (x.mT @ y)
    return (x @ x.mT) @ y


def ns_steps(steps: float) -> int:
    """`orthogonalize`'s step count: `steps` rounded to an integer, clamped to 1..NS_MAX_STEPS (nan: 1)."""
    if steps != steps:
        return 1
    return int(min(max(round(min(max(steps, -1e9), 1e9)), 1), NS_MAX_STEPS))


def orthogonalize_matrices(x: Tensor, a: float, b: float, c: float, steps: float, eps: float) -> Tensor:
    """Newton-Schulz orthogonalization of batches of m x n matrices, as torch.optim.Muon runs it:
    X = x / max(||x||_F, eps) (transposed when m > n), then `ns_steps(steps)` times
    X <- a X + (b A + c A A) X with A = X X^T; the result has x's shape. For a 1 x n matrix (a
    vector) A is the scalar s = ||X||^2, so the result is x / ||x|| scaled by the iterates of
    s -> (a + b s + c s^2)^2 s: it normalises the vector (up to the polynomial's factor)."""
    tall = x.shape[-2] > x.shape[-1]
    X = x.mT if tall else x
    norm = torch.linalg.matrix_norm(X, keepdim=True)
    X = (X / torch.clamp_min(norm, eps)).contiguous()  # (a transposed view's strides slow the matmuls)
    for _ in range(ns_steps(steps)):
        A = X @ X.mT
        X = _addmm(X, _addmm(A, A, A, b, c), X, a, 1.0)
    return X.mT if tall else X


def _addmm(x: Tensor, m1: Tensor, m2: Tensor, beta: float, alpha: float) -> Tensor:
    """beta x + alpha (m1 @ m2), one fused kernel for a batch of matrices (as torch.addmm)."""
    if x.dim() == 3:
        return torch.baddbmm(x, m1, m2, beta=beta, alpha=alpha)
    if x.dim() == 2:
        return torch.addmm(x, m1, m2, beta=beta, alpha=alpha)
    return beta * x + alpha * (m1 @ m2)


def _matrix(name, args, impl, expr, summary, result="tensor", **kw) -> None:
    _register(Op(name, tuple(args.split()), "matrix", impl, expr, summary, result=result, **kw))


_matrix("gram_mul", "x y", lambda r, x, y: r.matrices(gram_mul_matrices, x, y), "_gram_mul({0}, {1})",
        "(x x^T) y on each parameter's matrix view (shape[0] x rest)", arg_types=("tensor", "tensor"),
        foreach="_foreach_gram_mul({0}, {1})")
_matrix("orthogonalize", "x a b c steps eps",
        lambda r, x, a, b, c, steps, eps: r.matrices(
            lambda m: orthogonalize_matrices(m, a, b, c, steps, eps), x),
        "_orthogonalize({0}, {1}, {2}, {3}, {4}, {5})",
        "Newton-Schulz on each matrix view: x / max(|x|_F, eps), then round(steps) (1..10) times "
        "X <- a X + (b A + c A A) X, A = X X^T (a vector: normalised)",
        arg_types=("tensor", "const", "const", "const", "const", "const"), coefficient_args=(1, 2, 3, 4, 5),
        defaults=((1, 3.4445), (2, -4.775), (3, 2.0315), (4, 5.0), (5, 1e-7)),  # torch.optim.Muon's
        number_args=(1, 2, 3, 4, 5), foreach="_foreach_orthogonalize({0}, {1}, {2}, {3}, {4}, {5})")
_matrix("rows", "x", lambda r, x: r.matrix_rows(), "_rows({0})",
        "number of rows of x's matrix view (shape[0]; 1 for a vector)", result="scalar", sign=_always_positive,
        shape_only=True)
_matrix("cols", "x", lambda r, x: r.matrix_cols(), "_cols({0})",
        "number of columns of x's matrix view (prod(shape[1:]); a vector's length)", result="scalar",
        sign=_always_positive, shape_only=True)
