"""Export a program as a standalone `torch.optim.Optimizer` module that needs only torch.

Every export is made by one assembler (`assemble`): the program's plain optimizer, a class whose
code paths are written by `plain` (one parameter at a time, one line per statement), `foreach`
(`torch._foreach_*` over all tensors) and `fused` (each parameter's step compiled by torch.compile
into one loop, the default; declined by programs with ops over all parameters), named by `names`
(constants become constructor arguments named by their role), with the class written by
`optimizer_class`. A transform adds a subclass and its runtime functions: `distributed` (workers vote on the sign, Distributed Lion),
`subspace` (the program on low-rank projected gradients). `runtime` holds the functions the
generated modules call, copied into them from their source.

`step` is kept per parameter as a float64 tensor (exact counts) and used in the parameter's
dtype, as the interpreter does, except in a bias correction with a named beta, which the foreach
path computes in Python floats, as torch's Adam does.
"""
from optsearch.dsl.export.assemble import check_class_name, class_name_for, export_program, write_export
from optsearch.dsl.export.codegen import format_expr, strip_parens
from optsearch.dsl.export.distributed import VOTES, distributed_class_name, export_distributed, split_at_sign
from optsearch.dsl.export.names import EPS_MAX, Constants, Hyperparameter, name_constants
from optsearch.dsl.export.optimizer_class import DEFAULT_LR
from optsearch.dsl.export.subspace import export_subspace, subspace_class_name

__all__ = ["DEFAULT_LR", "EPS_MAX", "VOTES", "Constants", "Hyperparameter", "check_class_name", "class_name_for",
           "distributed_class_name", "export_distributed", "export_program", "export_subspace", "format_expr",
           "name_constants", "split_at_sign", "strip_parens", "subspace_class_name", "write_export"]
