"""The functions a generated module calls besides torch, written here as real, tested functions
and copied into each module that calls them by their source (`source`), so that the module
needs torch and nothing else."""
from __future__ import annotations

import inspect
import re

import torch
import torch.distributed as dist
from torch import Tensor

# ---------------------------------------------------------------------------------------------
# Every export


def _foreach_by_default(params: list[Tensor]) -> bool:
    """foreach=None means foreach when all tensors share one CPU or CUDA device and dtype."""
    first = params[0]
    return first.device.type in ("cpu", "cuda") and all(
        p.device == first.device and p.dtype == first.dtype for p in params)


def _fused_by_default(params: list[Tensor]) -> bool:
    """fused=None (with foreach=None) means fused when every tensor is on the CPU. On CUDA the fused
    step works (fused=True) but is not the default: it is launched once per parameter, ~35 us of
    host time each, which would outweigh a GPU's kernels for most models (not measured: no GPU)."""
    return all(p.device.type == "cpu" for p in params)


class _CompiledStep:
    """The fused path's step function, compiled by torch.compile on its first call with dynamic
    shapes, so that one compile serves parameters of every size. `compiles` counts the graphs
    compiled (a new rank, dtype or `maximize` adds one; a new learning rate never does). If
    compiling fails here (no C++ compiler, no Dynamo for this Python), `error` says why and `run`
    returns False from then on, so that the caller takes another path."""

    def __init__(self, fn):
        self.fn = fn
        self.compiles = 0
        self.error: str | None = None
        self._compiled = None

    def _backend(self, gm, example_inputs):
        self.compiles += 1
        return torch._dynamo.lookup_backend("inductor")(gm, example_inputs)

    def run(self, *args) -> bool:
        """Run the compiled step on `args`; False (and nothing written) if it cannot be compiled."""
        if self.error is not None:
            return False
        try:
            if self._compiled is None:
                self._compiled = torch.compile(self.fn, backend=self._backend, dynamic=True, fullgraph=True)
            self._compiled(*args)
        except Exception as e:  # a compiler missing or failing; the step's own errors surface on the other path
            cause = getattr(e, "inner_exception", None) or e.__cause__ or e  # torch wraps the compiler's error
            self.error = f"{type(cause).__name__}: {' '.join(str(cause).split())[:300]}"
            return False
        return True


def _step_tensors(flat: bool, *tensors: Tensor) -> list[Tensor]:
    """A parameter's tensors (the same memory) as the fused step takes them: with `flat` (a program
    blind to shapes) and all contiguous, as vectors, so that one compile serves every shape; else as
    they are, a 0-d one as shape (1,), since torch.compile drops in-place writes to 0-d inputs."""
    if flat and all(t.is_contiguous() for t in tensors):  # detach(): else Dynamo guards on the view's base
        return [t.view(-1).detach() for t in tensors]
    return [t.view(1) if t.dim() == 0 else t for t in tensors]


def _scalar(x: float, like: Tensor | None = None) -> Tensor:
    """A number as a 0-d tensor in `like`'s dtype and device (float64 without `like`), for ops
    that need tensors and so that scalar math keeps IEEE semantics (1 / 0 is inf)."""
    if like is None:
        return torch.tensor(x, dtype=torch.float64)
    return torch.as_tensor(x, dtype=like.dtype, device=like.device)


def _row_mean(x: Tensor) -> Tensor:
    """The mean of each row of `x` seen as a matrix (x.shape[0], rest), a vector being one row:
    a row value, shaped (x.shape[0], 1, ..., 1) (a vector's: (1,)) to broadcast against `x`."""
    if x.dim() == 0:
        return x.clone()
    return x.mean(dim=tuple(range(1, x.dim())) or 0, keepdim=True)


def _col_mean(x: Tensor) -> Tensor:
    """The mean of each column of `x` seen as a matrix (x.shape[0], rest), a vector being one row:
    a col value, shaped (1, *x.shape[1:]) (a vector's: like it) to broadcast against `x`."""
    if x.dim() < 2:
        return x.clone()
    return x.mean(0, keepdim=True)


def _matrix_view(x: Tensor) -> Tensor:
    """`x` seen as a matrix (x.shape[0], rest): a vector is one row, a 0-d tensor 1 x 1."""
    return x.reshape(1, -1) if x.dim() < 2 else x.flatten(1)


def _addmm(x: Tensor, m1: Tensor, m2: Tensor, beta: float, alpha: float) -> Tensor:
    """beta x + alpha (m1 @ m2) for one matrix or a batch of them, in one fused kernel."""
    if x.dim() == 3:
        return torch.baddbmm(x, m1, m2, beta=beta, alpha=alpha)
    return torch.addmm(x, m1, m2, beta=beta, alpha=alpha)


def _newton_schulz(x: Tensor, a: float, b: float, c: float, steps: float, eps: float) -> Tensor:
    """Newton-Schulz orthogonalization of an m x n matrix or a batch (k, m, n) of them, as
    torch.optim.Muon runs it: X = x / max(||x||_F, eps) (transposed when m > n), then `steps`
    (rounded, clamped to 1..10; nan: 1) times X <- a X + (b A + c A A) X with A = X X^T."""
    steps = 1 if steps != steps else int(min(max(round(min(max(steps, -1e9), 1e9)), 1), 10))
    tall = x.shape[-2] > x.shape[-1]
    X = x.mT if tall else x
    X = (X / torch.clamp_min(torch.linalg.matrix_norm(X, keepdim=True), eps)).contiguous()
    for _ in range(steps):
        A = X @ X.mT
        X = _addmm(X, _addmm(A, A, A, b, c), X, a, 1.0)
    return X.mT if tall else X


def _gram_matrices(x: Tensor, y: Tensor) -> Tensor:
    """(x x^T) y for one m x n matrix or a batch of them; x (x^T y) when m > n (a smaller product)."""
    if x.shape[-2] > x.shape[-1]:
        return x @ (x.mT @ y)
    return (x @ x.mT) @ y


def _orthogonalize(x: Tensor, a: float, b: float, c: float, steps: float, eps: float) -> Tensor:
    """`orthogonalize`: Newton-Schulz on `x`'s matrix view, shaped like `x`."""
    return _newton_schulz(_matrix_view(x), a, b, c, steps, eps).reshape(x.shape)


def _gram_mul(x: Tensor, y: Tensor) -> Tensor:
    """`gram_mul`: (x x^T) y on the matrix views of `x` and `y`, shaped like `y`."""
    return _gram_matrices(_matrix_view(x), _matrix_view(y)).reshape(y.shape)


def _rows(x: Tensor) -> Tensor:
    """The row count of `x`'s matrix view, as a 0-d tensor like `x`."""
    return torch.tensor(_matrix_view(x).shape[0], dtype=x.dtype, device=x.device)


def _cols(x: Tensor) -> Tensor:
    """The column count of `x`'s matrix view, as a 0-d tensor like `x`."""
    return torch.tensor(_matrix_view(x).shape[1], dtype=x.dtype, device=x.device)


def _by_matrix_view(xs: list[Tensor]) -> list[list[int]]:
    """The positions of `xs` grouped by matrix view shape, dtype and device: what stacks into one batch."""
    groups: dict = {}
    for k, x in enumerate(xs):
        groups.setdefault((_matrix_view(x).shape, x.dtype, x.device), []).append(k)
    return list(groups.values())


def _foreach_orthogonalize(xs: list[Tensor], a: float, b: float, c: float, steps: float,
                           eps: float) -> list[Tensor]:
    """`_orthogonalize` of every tensor of `xs`, one batched Newton-Schulz per matrix shape."""
    out: list = [None] * len(xs)
    for ks in _by_matrix_view(xs):
        batch = _newton_schulz(torch.stack([_matrix_view(xs[k]) for k in ks]), a, b, c, steps, eps)
        for k, o in zip(ks, batch.unbind(0)):
            out[k] = o.reshape(xs[k].shape)
    return out


def _foreach_gram_mul(xs: list[Tensor], ys: list[Tensor]) -> list[Tensor]:
    """`_gram_mul` of every pair of `xs` and `ys`, one batched product per matrix shape."""
    out: list = [None] * len(xs)
    for ks in _by_matrix_view(xs):
        batch = _gram_matrices(torch.stack([_matrix_view(xs[k]) for k in ks]),
                               torch.stack([_matrix_view(ys[k]) for k in ks]))
        for k, o in zip(ks, batch.unbind(0)):
            out[k] = o.reshape(ys[k].shape)
    return out


# Called by the code of some ops: added where called, with the helpers they call (in this order).
OP_HELPERS = ("_scalar", "_row_mean", "_col_mean", "_foreach_orthogonalize", "_foreach_gram_mul", "_orthogonalize",
              "_gram_mul", "_rows", "_cols", "_by_matrix_view", "_newton_schulz", "_addmm", "_gram_matrices",
              "_matrix_view")


def op_helpers(code: str) -> list[str]:
    """The `OP_HELPERS` that `code` calls, and those they call in turn."""
    called: set[str] = set()
    for name in OP_HELPERS:  # callers come before the helpers they call
        calls = re.compile(rf"(?<!\w){name}\(")
        if calls.search(code) or any(calls.search(inspect.getsource(globals()[c])) for c in called):
            called.add(name)
    return [name for name in OP_HELPERS if name in called]
FUSED = ("_fused_by_default", "_CompiledStep", "_step_tensors")  # every module with a fused path


# ---------------------------------------------------------------------------------------------
# Subspace exports (the math of `optsearch.dsl.subspace`, for one parameter at a time)


def _projects(p: Tensor, rank: int) -> bool:
    """Whether `p` runs in the subspace: a matrix whose smaller side is larger than the rank."""
    return p.dim() == 2 and min(p.shape) > rank


def _c(p: Tensor, x: Tensor) -> Tensor:
    """`x` (shaped like `p`) with the smaller side last."""
    return x.mT if p.shape[0] < p.shape[1] else x


def _top_right_singular(c: Tensor, rank: int) -> Tensor:
    """The top-`rank` right singular vectors of `c`, as rows (non-finite entries zeroed first)."""
    c = torch.nan_to_num(c, nan=0.0, posinf=0.0, neginf=0.0)
    return torch.linalg.svd(c, full_matrices=False).Vh[..., :rank, :]


def _pca_grad(c: Tensor, P: Tensor) -> Tensor:
    """Gradient w.r.t. `P` of `||G P^T P - G||^2` for `G = c / ||c||` (0 when `c` is 0)."""
    norm = torch.linalg.matrix_norm(c, keepdim=True)
    G = c / norm.clamp_min(torch.finfo(c.dtype).tiny)
    A = G @ P.mT
    R = A @ P - G
    return 2 * ((R @ P.mT).mT @ G + A.mT @ R)


SUBSPACE = ("_projects", "_c", "_top_right_singular", "_pca_grad")


# ---------------------------------------------------------------------------------------------
# Distributed exports: the workers' vote on their signs, 1 bit per element


def _pack_bits(bits: Tensor) -> Tensor:
    """A flat bool tensor of n elements as ceil(n / 8) uint8 bytes, element k in bit k % 8 of byte k // 8."""
    padded = torch.zeros((bits.numel() + 7) // 8 * 8, dtype=torch.uint8, device=bits.device)
    padded[:bits.numel()] = bits.reshape(-1)
    weights = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8, device=bits.device)
    return (padded.view(-1, 8) * weights).sum(1, dtype=torch.uint8)


def _unpack_bits(packed: Tensor, n: int) -> Tensor:
    """The first `n` bits of `_pack_bits`'s bytes, as a bool tensor."""
    shifts = torch.arange(8, dtype=torch.uint8, device=packed.device)
    return ((packed.unsqueeze(-1) >> shifts) & 1).reshape(-1)[:n].bool()


def _vote(signs: list[Tensor], vote: str, group=None) -> tuple[list[Tensor], int]:
    """The workers' vote on every element of `signs` (this worker's), and the bytes this worker sent.

    One all_gather carries each worker's signs as 1 bit per element (positive or not) and a flag
    byte saying whether it has exact zeros; only if one does, a second all_gather carries the
    bit planes of the nonzero elements, so that a zero stays a zero as in one process.
    """
    flat = torch.cat([s.reshape(-1) for s in signs])
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) == 1:
        total, workers, sent = flat, 1, 0
    else:
        workers, n = dist.get_world_size(group), flat.numel()
        nonzero = flat != 0
        flag = torch.tensor([0 if bool(nonzero.all()) else 1], dtype=torch.uint8, device=flat.device)
        message = torch.cat([_pack_bits(flat > 0), flag])
        gathered = [torch.empty_like(message) for _ in range(workers)]
        dist.all_gather(gathered, message, group=group)
        sent = message.numel()
        planes = None
        if any(bool(m[-1]) for m in gathered):
            plane = _pack_bits(nonzero)
            planes = [torch.empty_like(plane) for _ in range(workers)]
            dist.all_gather(planes, plane, group=group)
            sent += plane.numel()
        total = torch.zeros(n, dtype=torch.int32, device=flat.device)
        for k, m in enumerate(gathered):
            s = _unpack_bits(m[:-1], n).to(torch.int32) * 2 - 1
            total += s if planes is None else s * _unpack_bits(planes[k], n)
    result = torch.sign(total) if vote == "majority" else total.to(flat.dtype) / workers
    return [r.view_as(s).to(s.dtype) for r, s in zip(result.split([s.numel() for s in signs]), signs)], sent


DISTRIBUTED = ("_pack_bits", "_unpack_bits", "_vote")


def source(names: tuple[str, ...] | list[str]) -> str:
    """The source of the named functions of this module, as a generated module holds them."""
    return "\n\n\n".join(inspect.getsource(globals()[name]).rstrip() for name in names)
