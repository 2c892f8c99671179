"""The exported `torch.optim.Optimizer` subclass: constructor with validated hyperparameters,
the update rule as math in its docstring, and a `step` that gathers each param group's tensors
and state and hands them to one of the two code paths."""
from __future__ import annotations

import textwrap

from optsearch.dsl.export.codegen import Codegen, wrap
from optsearch.dsl.ops import OPS
from optsearch.dsl.printer import print_program

DEFAULT_LR = 1e-3

ROLE_DOC = {
    "beta": "coefficient of a moving average, decay or bias correction",
    "eps": "term added to a denominator for numerical stability",
    "weight_decay": "decoupled weight decay",
    "constant": "a constant of the program",
    "ns_a": "Newton-Schulz coefficient a (of X)",
    "ns_b": "Newton-Schulz coefficient b (of A X)",
    "ns_c": "Newton-Schulz coefficient c (of A A X)",
    "ns_steps": "Newton-Schulz iterations (rounded, clamped to 1..10)",
    "ns_eps": "lower bound on the Frobenius norm a matrix is divided by before Newton-Schulz (below 0: as 0)",
}
VALIDATION = {  # role -> (condition on x, message); as torch.optim words them
    "eps": ("0.0 <= {x}", "Invalid epsilon value: {{{x}}}"),
    "weight_decay": ("0.0 <= {x}", "Invalid weight_decay value: {{{x}}}"),
}


def class_source(cg: Codegen, cls: str, single: str, multi: str, fused=None, declined: str | None = None) -> str:
    """The source of `class cls(Optimizer)`, calling `single` (plain), `multi` (foreach) or, where the
    program has one (`fused`, `FusedNames`), the fused path; `declined` says why it has none."""
    hyper = cg.constants.hyper
    sig = ["self", "params", f"lr: float = {DEFAULT_LR!r}", *hyper_signature(hyper)]
    sig += ["*", "maximize: bool = False", "foreach: bool | None = None", "fused: bool | None = None"]
    first, *doc = _docstring(cg, declined)
    lines = [f"class {cls}(Optimizer):", '    r"""' + first]
    lines += [f"    {line}" if line else "" for line in doc] + ['    """', ""]
    lines += [*wrap("    def __init__(", sig, "):"),
              "        if not 0.0 <= lr:", '            raise ValueError(f"Invalid learning rate: {lr}")']
    for h in hyper:
        if h.arg == "betas":
            n = len(h.values)
            lines += [f"        if len(betas) != {n}:",
                      f'            raise ValueError(f"Invalid betas: expected {n} values, got {{betas!r}}")',
                      "        for index, beta in enumerate(betas):",
                      "            if not 0.0 <= beta < 1.0:",
                      '                raise ValueError(f"Invalid beta parameter at index {index}: {beta}")']
        elif h.role == "beta":
            lines += [f"        if not 0.0 <= {h.arg} < 1.0:",
                      f'            raise ValueError(f"Invalid {h.arg} value: {{{h.arg}}}")']
        elif h.role in VALIDATION:
            cond, msg = VALIDATION[h.role]
            lines += [f"        if not {cond.format(x=h.arg)}:",
                      f'            raise ValueError(f"{msg.format(x=h.arg)}")']
    lines += ["        if foreach and fused:",
              '            raise ValueError("foreach and fused cannot both be True; choose one path")']
    if fused is None:
        reason = (declined or "it was exported without one").replace('"', "'")
        lines += ["        if fused:",
                  f'            raise ValueError("fused=True is not available for this program: {reason}")']
    keys = ["lr"] + [h.arg for h in hyper] + ["maximize", "foreach", "fused"]
    lines += [*wrap("        defaults = dict(", [f"{k}={k}" for k in keys], ")"),
              "        super().__init__(params, defaults)", "",
              "    def __setstate__(self, state):",
              "        super().__setstate__(state)",
              "        for group in self.param_groups:",
              '            group.setdefault("maximize", False)',
              '            group.setdefault("foreach", None)',
              '            group.setdefault("fused", None)', "",
              *step_header(),
              "        for group in self.param_groups:"]
    state_lists, collect = collect_lines(cg, cls)
    lines += collect
    unpack, kwargs = group_kwargs(hyper)
    lines += unpack
    call_lists = ["params", "grads"] + state_lists + (["steps"] if cg.uses_step else [])
    lines += [*dispatch_lines(single, multi, call_lists + kwargs, fused=fused.driver if fused else None),
              "        return loss"]
    return "\n".join(lines)


def _docstring(cg: Codegen, declined: str | None = None) -> list[str]:
    """The class docstring, one line per item: the update as math, the program, the args."""
    p = cg.program
    out = [f"The optsearch program ``{p.name}`` as a ``torch.optim.Optimizer``.", "",
           "For every parameter tensor ``w`` with gradient ``g`` a step computes (state starts at",
           "zero; ``step`` counts the updates of this tensor from 1)::", ""]
    out += [f"    {cg.named_statement(i)}" for i in cg.live]
    out += ["    w = w - " + p.returns[0], ""]
    if any(s not in cg.state for s in p.state):
        out += ["State the update never reads is not kept: " + ", ".join(s for s in p.state if s not in cg.state)
                + ".", ""]
    used = list(dict.fromkeys(p.body[i].op for i in cg.live))
    out += ["where::", ""]
    width = max((len(OPS[o].signature) for o in used if OPS[o].summary != OPS[o].signature), default=0)
    out += [f"    {OPS[o].signature:<{width}}  {OPS[o].summary}" for o in used
            if OPS[o].summary != OPS[o].signature] + [""]
    if any(OPS[o].kind == "global" for o in used):
        out += [f"``{', '.join(o for o in used if OPS[o].kind == 'global')}`` spans all parameters of a param "
                "group that have a gradient, together.", ""]
    out += ["The program, as searched::", ""]
    out += [f"    {line}" for line in print_program(p).splitlines()] + ["", "Args:"]

    def arg(name: str, text: str) -> None:
        out.extend(textwrap.wrap(f"{name}: {text}", 92, initial_indent="    ", subsequent_indent="        "))

    arg("params", "iterable of parameters or dicts defining parameter groups.")
    arg("lr", f"learning rate (default: {DEFAULT_LR!r}).")
    for h in cg.constants.hyper:
        where = "; ".join(f"{n} in " + ", ".join(f"``{cg.named_statement(i)}``" for i in uses)
                          for n, uses in zip(h.code_names, h.uses))
        arg(h.arg, f"{ROLE_DOC[h.role]}: {where} (default: {h.default}).")
    arg("maximize", "maximize the objective instead of minimizing it (default: False).")
    arg("foreach", "use the ``torch._foreach_*`` path (True) or the plain per-tensor one (False); None "
                   "(default): the fused path where it is the default, else the foreach path when all "
                   "parameters of a group share one CPU or CUDA device and dtype.")
    if declined:
        arg("fused", f"not available for this program ({declined}); None (default) takes the foreach path "
                     "when all parameters of a group share one CPU or CUDA device and dtype.")
    else:
        arg("fused", "compile each parameter's step with torch.compile into one loop that allocates "
                     "nothing (the first step compiles, for seconds; a new lr never recompiles); None "
                     "(default) uses it when all parameters of a group are on the CPU, unless ``foreach`` is "
                     "given. ``compiled_step.compiles`` counts the compiles; where compiling fails, the "
                     "foreach path runs and ``compiled_step.error`` says why.")
    return out


def hyper_signature(hyper) -> list[str]:
    """The constructor's arguments for the program's hyperparameters, with their defaults."""
    out = []
    for h in hyper:
        typ = f"tuple[{', '.join(['float'] * len(h.values))}]" if h.arg == "betas" else "float"
        out.append(f"{h.arg}: {typ} = {h.default}")
    return out


def dispatch_lines(single: str, multi: str, args: list[str], indent: str = "            ",
                   fused: str | None = None) -> list[str]:
    """Inside the param-group loop: the lines choosing the plain, the foreach or (where there is one:
    `fused`) the fused path and calling it. torch's rule: an explicit `foreach` wins over the default."""
    if fused is None:
        return [f'{indent}foreach = group["foreach"]',
                f"{indent}if foreach is None:",
                f"{indent}    foreach = _foreach_by_default(params)",
                f"{indent}impl = {multi} if foreach else {single}",
                *wrap(f"{indent}impl(", args, ")")]
    return [f'{indent}foreach, fused = group["foreach"], group.get("fused")',
            f"{indent}if fused is None:",
            f"{indent}    fused = foreach is None and _fused_by_default(params)",
            f"{indent}if foreach is None:",
            f"{indent}    foreach = _foreach_by_default(params)",
            f"{indent}impl = {fused} if fused else {multi} if foreach else {single}",
            *wrap(f"{indent}impl(", args, ")")]


STEP_DOC = "Perform one optimization step; `closure` re-evaluates the model and returns the loss."


def step_header(doc: str = STEP_DOC) -> list[str]:
    """The lines opening `step(closure)`, up to the closure's loss: shared by every exported class."""
    return ["    @torch.no_grad()", "    def step(self, closure=None):", f'        """{doc}"""',
            "        loss = None", "        if closure is not None:", "            with torch.enable_grad():",
            "                loss = closure()"]


def group_kwargs(hyper) -> tuple[list[str], list[str]]:
    """Inside the param-group loop: the lines unpacking `betas`, and the keyword arguments that pass
    the group's lr, hyperparameters and `maximize` on to the step function."""
    unpack, kwargs = [], ['lr=float(group["lr"])']
    for h in hyper:
        if h.arg == "betas":
            unpack.append(f'            {", ".join(h.code_names)} = group["betas"]')
            kwargs += [f"{n}={n}" for n in h.code_names]
        else:
            kwargs.append(f'{h.arg}=group["{h.arg}"]')
    return unpack, kwargs + ['_maximize=group["maximize"]']


def collect_lines(cg, cls: str) -> tuple[list[str], list[str]]:
    """The names of the per-state lists and the lines, inside `for group in self.param_groups:`,
    that gather each parameter with a gradient, its state (created on the first step, shaped by the
    state's type) and its step count into lists; shared by every exported class."""
    lines: list[str] = []
    state_lists = [cg.state_list(s) for s in cg.state]
    lists = ["params", "grads"] + state_lists + ["steps"]
    lines += [f"            {', '.join(lists)} = {', '.join(['[]'] * len(lists))}",
              '            for p in group["params"]:',
              "                if p.grad is None:",
              "                    continue",
              "                if p.grad.is_sparse:",
              f'                    raise RuntimeError("{cls} does not support sparse gradients")',
              "                if p.is_complex():",
              f'                    raise RuntimeError("{cls} does not support complex parameters; optimize "',
              '                                       "torch.view_as_real(p) as a real parameter instead")',
              "                state = self.state[p]",
              "                if not state:",
              '                    state["step"] = torch.tensor(0.0, dtype=torch.float64)']
    zeros = {"tensor": "torch.zeros_like(p, memory_format=torch.preserve_format)",  # by the state's type
             "row": "torch.zeros_like(_row_mean(p))", "col": "torch.zeros_like(_col_mean(p))"}
    kinds = dict(zip(cg.program.state, cg.a.state_types))
    lines += [f'                    state["{cg.names[s]}"] = {zeros[kinds[s]]}' for s in cg.state]
    lines += ['                state["step"] += 1', "                params.append(p)", "                grads.append(p.grad)"]
    lines += [f'                {name}.append(state["{cg.names[s]}"])' for name, s in zip(state_lists, cg.state)]
    lines += ['                steps.append(state["step"])', "            if not params:", "                continue"]
    return state_lists, lines
