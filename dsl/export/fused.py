"""The fused path of an exported optimizer (`_fused_*`): the program's step for one parameter as one
function compiled once by `torch.compile`, so that each parameter's update is one loop over its
memory that reads the gradient and state once and writes the parameter and state in place, with no
full-size temporaries (torch's `fused=True` Adam does the same by hand).

Two functions are written:

- the step (`_fused_step_*`): one parameter, its gradient and state, and every number it reads as
  a 0-d tensor in the parameter's dtype, so that a new learning rate (an LR scheduler) or another
  param group's hyperparameters are new tensor values, never a recompile. It is compiled with
  dynamic shapes, and a program blind to shapes (no row/col ops) gets every tensor as a vector, so
  one compile serves parameters of every shape (one more per dtype, `maximize`, size-1 tensors).
- the driver (`_fused_*`), with the signature of the other two paths, which computes outside the
  compiled step what depends only on `lr`, `step` and constants: left inside, the compiler would
  recompute it for every element. A bias correction `x / (1 - beta ** step)` becomes `x` times the
  reciprocal computed there (a division per element costs more than the memory traffic of a
  step; the result may differ in the last bit, as the foreach path's folded forms do).

A program is declined (the class says why, and `fused=None` takes the foreach path) when one of its
ops spans all parameters (`global_norm`): the fused step sees one parameter at a time, or is a
matrix op (`orthogonalize`, ...): the foreach path batches those per matrix shape, and Newton-Schulz's
step count does not trace. Reductions (`norm`, `rms`, ...) and factored row/col state are per
parameter and compile as they are. If compiling fails where the module runs (no C++
compiler, no Dynamo for this Python), the step records why and the foreach path takes over.
"""
from __future__ import annotations

from dataclasses import dataclass

from optsearch.dsl.export.codegen import Codegen, format_expr, strip_parens, wrap
from optsearch.dsl.export.plain import number_values
from optsearch.dsl.ops import OPS


def fused_declines(cg: Codegen) -> str | None:
    """Why the fused path cannot run `cg`'s program, or None when it can."""
    for i in cg.live:
        op = OPS[cg.program.body[i].op]
        if op.kind == "global":
            return (f"`{op.name}` spans all parameters at once, and the fused step sees one parameter "
                    "at a time")
        if op.kind == "matrix":
            return (f"`{op.name}` is a matrix op: the foreach path runs it batched per matrix shape, which "
                    "the per-parameter compiled step cannot")
    return None


@dataclass(frozen=True)
class FusedNames:
    """The names of the fused path's functions in a generated module."""

    driver: str     # `_fused_NAME`: the path, called like the other two
    step: str       # `_fused_step_NAME`: one parameter, compiled
    compiled: str   # `_compiled_step_NAME`: the `_CompiledStep` holding the compiled step

    @classmethod
    def of(cls, program_name: str) -> "FusedNames":
        return cls(f"_fused_{program_name}", f"_fused_step_{program_name}", f"_compiled_step_{program_name}")


def write_fused(cg: Codegen, names: FusedNames, fallback: str) -> list[str]:
    """The lines of the step function, the driver, and the `_CompiledStep` binding; the driver calls
    `fallback` (the foreach path) for what is left of a group when the step cannot be compiled."""
    return _FusedWriter(cg).write(names, fallback)


class _FusedWriter:
    """Splits the program into what the driver computes (scalars over `lr`, `step` and constants:
    `hoisted`; bias-correction denominators: `dens`) and what the compiled step computes."""

    def __init__(self, cg: Codegen):
        self.cg, self.body, self.a = cg, cg.program.body, cg.a
        self.number = number_values(cg, cg.live)
        self.hoisted: dict[int, bool] = {}   # statement -> whether it depends on `step`
        for i in cg.live:
            reads = self.a.reads[i]
            if OPS[self.body[i].op].kind == "elementwise" and all(
                    r is None or r in ("lr", "step") or r in self.hoisted for r in reads):
                self.hoisted[i] = any(r == "step" or self.hoisted.get(r, False) for r in reads)
        self.dens: dict[int, bool] = {}      # bias_correct statement -> whether its denominator depends on `step`
        for i in cg.live:
            reads = self.a.reads[i]
            if self.body[i].op == "bias_correct" and i not in self.hoisted and all(
                    r is None or r in ("lr", "step") or r in self.hoisted for r in reads[1:]):
                self.dens[i] = any(r == "step" or self.hoisted.get(r, False) for r in reads[1:])
        self.kernel = [i for i in cg.live if i not in self.hoisted]
        # interp with a weight the driver knows: torch.lerp's two formulas (|a| < 0.5 or not) chosen
        # there, once, instead of both computed for every element and one selected.
        self.lerps = [i for i in self.kernel if self.body[i].op == "interp"
                      and (self.a.reads[i][2] in (None, "lr") or self.a.reads[i][2] in self.hoisted)]

    # -- names ------------------------------------------------------------------------------

    def hoisted_name(self, i: int) -> str:
        return self.cg.derived(i, f"h{i}")

    def hi_name(self, i: int) -> str:
        return self.cg.derived(i, f"hi{i}")

    def den_name(self, i: int) -> str:
        """The name of `1 / (1 - beta ** step)` of bias correction `i`."""
        return self.cg.derived(i, f"bc{i}")

    def driver_text(self, src, text: str) -> str:
        """A value's name in the driver (constants: their hyperparameter name, `text`)."""
        if src is None or src in ("lr", "step"):
            return text if src is None else src
        return self.hoisted_name(src)

    def step_text(self, src, text: str) -> str:
        """A value's name in the compiled step."""
        if src is None:
            return text
        if isinstance(src, int):
            return self.hoisted_name(src) if src in self.hoisted else self.cg.name(src)
        return self.cg.names[src]

    def driver_expr(self, i: int) -> str:
        """Hoisted statement `i` in the driver, with the plain path's numbers (Python floats where
        only numbers meet, 0-d tensors in the parameter's dtype where `step` is read)."""
        parts = [(self.driver_text(src, t), self.number[src] if src is not None else True)
                 for src, t in (self.cg.operand(i, k) for k in range(len(self.body[i].args)))]
        return strip_parens(format_expr(self.body[i].op, parts)[0])

    def den_expr(self, i: int) -> str:
        """`1 / (1 - beta ** step)`, a tensor (so that 1 / 0 is inf), as the plain path's numbers."""
        (bs, bt), (ss, st) = self.cg.operand(i, 1), self.cg.operand(i, 2)
        den = f"1 - {self.driver_text(bs, bt)} ** {self.driver_text(ss, st)}"
        return f"1 / ({den})" if self.dens[i] else f"1 / _scalar({den})"

    # -- what the compiled step reads -------------------------------------------------------

    def step_reads(self) -> tuple[list[str], list[str]]:
        """The numbers the compiled step takes: per parameter (they read `step`), then per group."""
        per_param: dict[str, None] = {}
        per_group: dict[str, None] = {}
        for i in self.kernel:
            for k, (src, text) in enumerate(self.cg.operand(i, p) for p in range(len(self.body[i].args))):
                if i in self.dens and k > 0:
                    continue
                if src == "step" or (isinstance(src, int) and self.hoisted.get(src)):
                    per_param[self.step_text(src, text)] = None
                elif src is None or src == "lr" or src in self.hoisted:
                    per_group[self.step_text(src, text)] = None
            if i in self.dens:
                (per_param if self.dens[i] else per_group)[self.den_name(i)] = None
        for src in [self.a.outputs[0], *self.cg.finals.values()]:  # a scalar update, say `lr * c0`
            if isinstance(src, int) and src in self.hoisted:
                (per_param if self.hoisted[src] else per_group)[self.hoisted_name(src)] = None
            elif src in ("lr", "step"):
                (per_param if src == "step" else per_group)[src] = None
        return list(per_param), list(per_group)

    # -- the lines --------------------------------------------------------------------------

    def write(self, names: FusedNames, fallback: str) -> list[str]:
        per_param, per_group = self.step_reads()
        return [*self.step_lines(names.step, per_param, per_group), "", "",
                f"{names.compiled} = _CompiledStep({names.step})", "", "",
                *self.driver_lines(names, fallback, per_param, per_group)]

    def step_lines(self, fn: str, per_param: list[str], per_group: list[str]) -> list[str]:
        cg, body, a = self.cg, self.body, self.a
        tensors = ["_param", "_grad", *(cg.state_list(s) for s in cg.state)]
        his = [self.hi_name(i) for i in self.lerps]
        lines = [*wrap(f"def {fn}(", tensors + per_param + per_group + his + ["_maximize"], "):"),
                 '    """The update of one parameter, compiled once by torch.compile: every number is a 0-d',
                 "    tensor in the parameter's dtype. It writes the parameter and its state in place.\"\"\""]
        reads = {r for i in self.kernel for r in a.reads[i]} | {a.outputs[0], *cg.finals.values()}
        if "w" in reads:
            lines.append(f"    {cg.names['w']} = _param")
        if "g" in reads:
            lines.append(f"    {cg.names['g']} = -_grad if _maximize else _grad")
        for s in cg.state:
            if s in reads:
                lines.append(f"    {cg.names[s]} = {cg.state_list(s)}")
        for i in self.kernel:
            if i in self.dens:
                x = self.cg.operand(i, 0)
                expr = f"{self.step_text(*x)} * {self.den_name(i)}"
            elif i in self.lerps:  # torch.lerp(x, y, a), as torch computes it
                x, y, w = (self.step_text(*cg.operand(i, k)) for k in range(3))
                expr = f"{y} - ({y} - {x}) * (1 - {w}) if {self.hi_name(i)} else {x} + {w} * ({y} - {x})"
            else:
                parts = [(self.step_text(src, t), False)
                         for src, t in (cg.operand(i, k) for k in range(len(body[i].args)))]
                expr = strip_parens(format_expr(body[i].op, parts)[0])
            lines.append(f"    {cg.name(i)} = {expr}  # {cg.named_statement(i)}")
        # The end, as in the plain path: a value whose memory changes first is copied.
        new_name = {}
        for s, f in cg.finals.items():
            if f == "w" or (f in cg.program.state and f != s):
                new_name[s] = cg.derived(s, "new")
                lines.append(f"    {new_name[s]} = {self.step_text(f, '')}.clone()")
        lines.append(f"    _param.sub_({self.step_text(a.outputs[0], '')})  # w = w - update")
        for s, f in cg.finals.items():
            if f != s:
                lines.append(f"    {cg.state_list(s)}.copy_({new_name.get(s) or self.step_text(f, '')})")
        return lines

    def driver_lines(self, names: FusedNames, fallback: str, per_param: list[str], per_group: list[str]) -> list[str]:
        cg = self.cg
        lists = ["_params", "_grads", *(cg.state_list(s) for s in cg.state), *(["_steps"] if cg.uses_step else [])]
        hyper = [n for h in cg.constants.hyper for n in h.code_names]
        lines = [*cg.def_lines(names.driver, per_tensor=True),
                 f'    """The update, one parameter at a time through `{names.step}` compiled (the fused',
                 "    path); what depends only on lr, step and constants is computed here, once.\"\"\""]
        by_step = [i for i, dep in self.hoisted.items() if dep]
        for i, dep in self.hoisted.items():
            if not dep:
                lines.append(f"    {self.hoisted_name(i)} = {self.driver_expr(i)}  # {cg.named_statement(i)}")
        for i, dep in self.dens.items():
            if not dep:
                lines.append(f"    {self.den_name(i)} = {self.den_expr(i)}")
        numbers = [f"_scalar({n}, _param)" if n != "step" and self._is_number(n) else n for n in per_param]
        numbers += [f"_scalar({n}, _param)" for n in per_group]
        numbers += [f"bool(abs({self.driver_text(*cg.operand(i, 2))}) >= 0.5)" for i in self.lerps]
        by_param = bool(per_param or by_step or any(self.dens.values()))
        if numbers:  # parameters of one step count, dtype and device read the same numbers: made once
            lines.append("    _numbers = {}  # (step, dtype, device) -> the numbers the step reads, as 0-d tensors")
        lines.append("    for _i, _param in enumerate(_params):")
        if numbers:
            key = "_steps[_i].item(), _param.dtype, _param.device" if by_param else "_param.dtype, _param.device"
            lines += [f"        _key = ({key})",
                      "        _n = _numbers.get(_key)",
                      "        if _n is None:"]
            if by_param:
                lines.append("            step = _steps[_i].to(_param)")
            for i in by_step:
                lines.append(f"            {self.hoisted_name(i)} = {self.driver_expr(i)}  # {cg.named_statement(i)}")
            for i, dep in self.dens.items():
                if dep:
                    lines.append(f"            {self.den_name(i)} = {self.den_expr(i)}")
            lines += wrap("            _n = _numbers[_key] = (", numbers, ",)" if len(numbers) == 1 else ")")
        # detach(): the same memory, seen as a plain tensor, whose size Dynamo keeps dynamic (a Parameter's it fixes)
        flat = all(OPS[self.body[i].op].kind in ("elementwise", "reduction") for i in self.kernel)
        tensors = ["_param.detach()", "_grads[_i]", *(f"{cg.state_list(s)}[_i]" for s in cg.state)]
        lines += wrap("        _tensors = _step_tensors(", [str(flat), *tensors], ")")
        call = ["*_tensors", *(["*_n"] if numbers else []), "_maximize"]
        lines += wrap(f"        if not {names.compiled}.run(", call, "):")
        lines.append("            # not compiled here: the foreach path takes the rest of the group")
        rest = [f"{x}[_i:]" for x in lists] + [f"{n}={n}" for n in ["lr", *hyper]] + ["_maximize=_maximize"]
        lines += wrap(f"            return {fallback}(", rest, ")")
        return lines

    def _is_number(self, name: str) -> bool:
        """Whether the per-parameter value `name` is a Python number in the driver (then it is made a tensor)."""
        for i in self.hoisted:
            if self.hoisted_name(i) == name:
                return self.number[i]
        return False
