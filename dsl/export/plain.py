"""The plain path of an exported optimizer (`_single_tensor_*`): one parameter tensor at a
time, one line per statement, easy to audit."""
from __future__ import annotations

from collections import Counter

from optsearch.dsl.export.codegen import Codegen, format_expr, strip_parens
from optsearch.dsl.ops import OPS


def number_values(cg: Codegen, statements) -> dict[object, bool]:
    """Which values are plain Python numbers in the per-tensor code (lr, and elementwise results
    over numbers only), so their expressions may use number forms; `statements` in program order."""
    body, a = cg.program.body, cg.a
    number: dict[object, bool] = {"w": False, "g": False, "lr": True, "step": False}
    number.update({s: False for s in cg.program.state})
    for i in statements:
        number[i] = OPS[body[i].op].kind == "elementwise" and all(
            number[r] if r is not None else True for r in a.reads[i])
    return number


def write_single_tensor(cg: Codegen, fn: str) -> list[str]:
    """The lines of `def fn(...)`, the plain path."""
    body, a = cg.program.body, cg.a
    number = number_values(cg, cg.live)

    # A global op needs its argument for every tensor first: it splits the loop into stages.
    # Values crossing stages are kept in lists (`_x_all`); global values live outside the loops
    # under a name no loop rebinds.
    stages: list[list[int]] = [[]]
    glob: list[int] = []
    for i in cg.live:
        if OPS[body[i].op].kind == "global":
            glob.append(i)
            stages.append([])
        else:
            stages[-1].append(i)
    stage_of = {i: k for k, st in enumerate(stages) for i in st}
    update, finals = a.outputs[0], cg.finals
    reads_in = [[r for i in st for r in a.reads[i] if r is not None] for st in stages]
    reads_in[-1] += [update, *finals.values()]
    for k, i in enumerate(glob):  # the global op between stages k and k + 1 reads stage <= k
        reads_in[k].extend(r for r in a.reads[i] if r is not None and stage_of.get(r, -1) < k)
    crossing = [i for k, st in enumerate(stages) for i in st
                if any(i in reads_in[j] for j in range(k + 1, len(stages))) or any(i in a.reads[j] for j in glob)]
    text = {src: cg.name(src) for src in cg.live}
    counts = Counter(cg.name(i) for i in crossing)
    listed = {i: cg.derived(i, "all" + (str(i) if counts[cg.name(i)] > 1 else "")) for i in crossing}
    assigned = {cg.name(i) for st in stages for i in st}
    for i in glob:
        if text[i] in assigned or sum(cg.name(j) == text[i] for j in glob) > 1:
            text[i] = cg.derived(i, f"global{i}")
    list_of = {"w": "_params", "g": "_grads", **{s: cg.state_list(s) for s in cg.program.state}}

    lines = [*cg.def_lines(fn, per_tensor=True),
             '    """The update, one parameter tensor at a time (the plain path)."""']
    if any("g" in rs for rs in reads_in):
        lines += ["    if _maximize:", "        _grads = [-_grad for _grad in _grads]"]
    for k, stage in enumerate(stages):
        lines += [f"    {listed[i]} = []" for i in stage if i in listed]
        if stage or k == len(stages) - 1:
            lines.append("    for _i, w in enumerate(_params):")
            for r in dict.fromkeys(r for r in reads_in[k] if r != "w" and stage_of.get(r) != k):
                if r == "step":  # in the parameter's dtype, as the program computes
                    lines.append("        step = _steps[_i].to(w)")
                elif r in list_of:
                    lines.append(f"        {cg.name(r)} = {list_of[r]}[_i]")
                elif isinstance(r, int) and r in listed:
                    lines.append(f"        {cg.name(r)} = {listed[r]}[_i]")
            for i in stage:
                parts = [(t if src is None else text.get(src, t), number[src] if src is not None else True)
                         for src, t in (cg.operand(i, p) for p in range(len(body[i].args)))]
                lines.append(f"        {text[i]} = {strip_parens(format_expr(body[i].op, parts)[0])}")
            lines += [f"        {listed[i]}.append({text[i]})" for i in stage if i in listed]
        if k < len(glob):
            i = glob[k]
            src = a.reads[i][0]
            lines.append(f"    {text[i]} = {OPS[body[i].op].expr.format(listed.get(src) or list_of[src])}")
    # The end: the parameter, then the state; a value whose memory changes first is copied.
    new_name = {}
    for s, f in finals.items():
        if f == "w" or (f in cg.program.state and f != s):
            new_name[s] = cg.derived(s, "new")
            lines.append(f"        {new_name[s]} = {cg.name(f)}.clone()")
    lines.append(f"        {'_params[_i]' if cg.w_rebound else 'w'}.sub_({text.get(update, cg.name(update))})")
    for s, f in finals.items():
        if f != s:
            lines.append(f"        {cg.state_list(s)}[_i].copy_({new_name.get(s, text.get(f, cg.name(f)))})")
    return lines
