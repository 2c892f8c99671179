"""The runtime functions that generated modules call, tested as functions, and copied into the
modules from their source."""
from __future__ import annotations

import inspect

import pytest
import torch

from optsearch import discovered
from optsearch.dsl import subspace as subspace_math
from optsearch.dsl.export import export_distributed, export_program, export_subspace, runtime
from optsearch.dsl.subspace import Subspace


def test_scalar_keeps_ieee_semantics_in_the_dtype_of_like():
    like = torch.ones(2, dtype=torch.float16)
    assert runtime._scalar(0.5, like).dtype == torch.float16
    assert runtime._scalar(0.5).dtype == torch.float64
    assert torch.isinf(1 / runtime._scalar(0.0))


@pytest.mark.parametrize("shape, row, col", [((3, 4, 5), (3, 1, 1), (1, 4, 5)), ((3,), (1,), (3,)), ((), (), ())])
def test_row_and_col_means_broadcast_against_their_tensor(shape, row, col):
    x = torch.arange(float(torch.Size(shape).numel())).reshape(shape)
    assert runtime._row_mean(x).shape == row and runtime._col_mean(x).shape == col
    if len(shape) == 3:
        torch.testing.assert_close(runtime._row_mean(x), x.reshape(3, -1).mean(1).reshape(3, 1, 1))
        torch.testing.assert_close(runtime._col_mean(x), x.mean(0, keepdim=True))


def test_fused_by_default_on_the_cpu_only():
    assert runtime._fused_by_default([torch.ones(2), torch.ones(3, dtype=torch.float64)])
    assert not runtime._fused_by_default([torch.ones(2), torch.ones(3, device="meta")])


def test_step_tensors_are_views_flat_or_as_they_are():
    x, y, t = torch.tensor(2.0), torch.ones(2, 3), torch.ones(3, 2).mT
    flat = runtime._step_tensors(True, x, y)
    assert [v.shape for v in flat] == [(1,), (6,)] and flat[1].data_ptr() == y.data_ptr()
    kept = runtime._step_tensors(True, y, t)  # not all contiguous: shapes kept
    assert kept[0] is y and kept[1] is t
    shaped = runtime._step_tensors(False, x, y)  # row/col ops need the shape; a 0-d tensor becomes (1,)
    assert shaped[0].shape == (1,) and shaped[0].data_ptr() == x.data_ptr() and shaped[1] is y


def test_foreach_by_default_only_for_one_device_and_dtype():
    assert runtime._foreach_by_default([torch.ones(2), torch.ones(3)])
    assert not runtime._foreach_by_default([torch.ones(2), torch.ones(3, dtype=torch.float64)])


def test_projects_only_matrices_whose_smaller_side_exceeds_the_rank():
    assert runtime._projects(torch.ones(8, 5), 4)
    assert not runtime._projects(torch.ones(8, 4), 4)
    assert not runtime._projects(torch.ones(50), 4)
    assert not runtime._projects(torch.ones(8, 8, 8), 4)


def test_c_puts_the_smaller_side_last():
    assert runtime._c(torch.ones(3, 7), torch.ones(3, 7)).shape == (7, 3)
    assert runtime._c(torch.ones(7, 3), torch.ones(7, 3)).shape == (7, 3)


def test_subspace_math_is_the_interpreters():
    """The export computes the projection as the interpreter's subspace transform does."""
    gen = torch.Generator().manual_seed(0)
    c = torch.randn(10, 6, generator=gen, dtype=torch.float64)
    P = torch.randn(2, 6, generator=gen, dtype=torch.float64)
    assert torch.equal(runtime._pca_grad(c, P), subspace_math._pca_grad(c, P))
    c[0, 0] = float("nan")
    assert torch.equal(runtime._top_right_singular(c, 2), subspace_math._top_right_singular(c, 2))
    assert runtime._top_right_singular(c, 2).shape == (2, 6)


def test_the_pca_gradient_is_the_gradient_of_the_online_pca_loss():
    gen = torch.Generator().manual_seed(1)
    c = torch.randn(10, 6, generator=gen, dtype=torch.float64)
    P = torch.randn(2, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    G = c / torch.linalg.matrix_norm(c)
    (expected,) = torch.autograd.grad((G @ P.mT @ P - G).square().sum(), P)
    torch.testing.assert_close(runtime._pca_grad(c, P.detach()), expected)


def test_generated_modules_hold_the_runtime_functions_source():
    lion, factored = discovered.load_zoo("lion"), discovered.load_zoo("lion_factored")
    modules = {runtime.DISTRIBUTED: export_distributed(lion),
               runtime.SUBSPACE: export_subspace(lion, Subspace(rank=2)),
               ("_foreach_by_default", "_row_mean", "_col_mean", *runtime.FUSED): export_program(factored)}
    for names, module in modules.items():
        for name in names:
            assert inspect.getsource(getattr(runtime, name)).rstrip() in module, name
    assert "def _row_mean" not in export_program(lion)  # only what the code calls
    assert runtime.source(["_c", "_projects"]) == (inspect.getsource(runtime._c).rstrip() + "\n\n\n"
                                                   + inspect.getsource(runtime._projects).rstrip())


def test_export_modules_import_no_private_names():
    """Each module of the export package uses the others through their public names only."""
    import ast
    from pathlib import Path

    import optsearch.dsl.export as package
    for path in Path(package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("optsearch"):
                assert not [a.name for a in node.names if a.name.startswith("_")], path.name


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (4, 5, 3), (4, 3, 5)], ids=["tall", "wide", "batch-tall", "batch-wide"])
def test_matrix_math_is_the_interpreters(shape):
    """The export's Newton-Schulz and gram product compute what the op registry's do, bit for bit,
    on one matrix (the plain path) and on a stacked batch (the foreach path)."""
    from optsearch.dsl.ops import gram_mul_matrices, orthogonalize_matrices

    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(2, *shape, generator=gen, dtype=torch.float64)
    for steps in (0.0, 4.6, 1e300, float("nan")):
        assert torch.equal(runtime._newton_schulz(x, 3.4445, -4.775, 2.0315, steps, 1e-7),
                           orthogonalize_matrices(x, 3.4445, -4.775, 2.0315, steps, 1e-7))
    assert torch.equal(runtime._gram_matrices(x, y), gram_mul_matrices(x, y))


def test_matrix_helpers_see_every_shape_as_the_interpreter_does():
    for shape, view in [((3, 4), (3, 4)), ((2, 3, 2), (2, 6)), ((5,), (1, 5)), ((), (1, 1)), ((0, 3), (0, 3))]:
        x = torch.ones(shape)
        assert runtime._matrix_view(x).shape == view
        assert (runtime._rows(x).item(), runtime._cols(x).item()) == view and runtime._rows(x).dtype == x.dtype


def test_a_module_holds_the_matrix_helpers_its_code_calls_and_those_they_call():
    assert runtime.op_helpers("o = _foreach_gram_mul(m, g)") == ["_foreach_gram_mul", "_by_matrix_view",
                                                                 "_gram_matrices", "_matrix_view"]
    assert runtime.op_helpers("r = _rows(w)") == ["_rows", "_matrix_view"]
    assert runtime.op_helpers("o = _orthogonalize(m, 1.5, -0.5, 0.0, 5.0, 0.0)") == [
        "_orthogonalize", "_newton_schulz", "_addmm", "_matrix_view"]
    assert "def _newton_schulz" not in export_program(discovered.load_zoo("adamw"))
