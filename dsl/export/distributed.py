"""Export a sign-based program as a Distributed Lion optimizer (`optsearch export --distributed`).

Distributed Lion (Liu et al. 2024): in data-parallel training each worker runs the optimizer on
its own gradient up to the sign, keeping its state (momentum) local; the workers exchange only
the signs, 1 bit per element, and every worker applies the same update made from their majority
vote (or their mean). Parameters stay identical on every worker without ever sending a gradient.

A program qualifies when its update is `sign(x) * scale + terms in w`, `x` computed from the
gradient and state, `scale` from `lr`, `step`, constants and `w` only (`split_at_sign` reads this
off the IR). The generated module holds the program's ordinary exported optimizer (`assemble.py`)
and a subclass whose `step` runs in three parts: `_local_*` (this worker: the signs and the new
state, one parameter at a time), `_vote` (`runtime.py`: one `all_gather` of packed bits for all parameters),
and the update from the vote, written by the ordinary exporter's plain and foreach code writers
from a program in which the vote is a state variable.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from optsearch.dsl.analysis import Analysis, check
from optsearch.dsl.errors import OptsearchError
from optsearch.dsl.export import runtime
from optsearch.dsl.export.assemble import (CodePaths, PlainOptimizer, assemble, check_class_name, class_name_for,
                                             code_paths, header, plain_optimizer)
from optsearch.dsl.export.codegen import Codegen, format_expr, strip_parens, wrap
from optsearch.dsl.export.names import Constants
from optsearch.dsl.export.optimizer_class import (collect_lines, dispatch_lines, group_kwargs, hyper_signature,
                                                  step_header)
from optsearch.dsl.export.plain import number_values
from optsearch.dsl.ir import INPUTS, Program, Var
from optsearch.dsl.ops import OPS
from optsearch.dsl.printer import format_statement

Vote = Literal["majority", "mean"]
VOTES: tuple[str, ...] = ("majority", "mean")


@dataclass(frozen=True)
class SignSplit:
    """A sign-based program cut at its sign: what each worker computes, what all apply."""

    sign: int                   # the statement `s = sign(x)` the workers vote on
    local: tuple[int, ...]      # statements each worker runs on its own gradient: the sign, the new state
    apply: Program              # the update as a program of `w`, `lr`, `step` and the vote (its one state)
    apply_from: tuple[int, ...]  # the statement of `program` each statement of `apply` comes from


def split_at_sign(program: Program, a: Analysis | None = None) -> SignSplit:
    """Cut `program` at the sign its update is made of; `OptsearchError` saying why it is not sign-based."""
    a = a or check(program)
    body, state = program.body, set(program.state)

    def refuse(reason: str) -> OptsearchError:
        return OptsearchError(f"program {program.name!r} is not sign-based, so it cannot vote: {reason}; "
                              "--distributed needs an update sign(...) * lr + terms in w")

    def statement(i: int) -> str:
        return f"line {body[i].line}: `{format_statement(body[i])}`" if body[i].line else f"`{format_statement(body[i])}`"

    local: dict[object, bool] = {p: p == "g" or p in state for p in program.params}
    for i in sorted(a.live):
        local[i] = any(local[r] for r in a.reads[i] if r is not None)
    glob = [i for i in sorted(a.live) if OPS[body[i].op].kind == "global"]
    if glob:
        raise refuse(f"{statement(glob[0])} spans all parameters, which the per-worker part does not support")
    update = a.outputs[0]
    if not local[update]:
        raise refuse("its update does not depend on the gradient")
    # Walk back from the update, stopping at signs of local values: every other local value on
    # the way must combine them linearly with a scale every worker agrees on.
    signs, seen, stack = set(), set(), [update]
    while stack:
        src = stack.pop()
        if src in seen:
            continue
        seen.add(src)
        if isinstance(src, str):
            if local[src]:
                what = "the gradient g" if src == "g" else f"the state {src!r}"
                raise refuse(f"its update reads {what} other than through sign(...)")
            continue
        if body[src].op == "sign" and local[a.reads[src][0]]:
            signs.add(src)
            continue
        op, reads = OPS[body[src].op], a.reads[src]  # per element, affine in the local values, scalar scales
        if local[src] and not (op.elementwise and op.affine_in([r is not None and local[r] for r in reads],
                                                               [r is None or _type(r, a) == "scalar" for r in reads])):
            raise refuse(f"{statement(src)} is not sign(...) times a scale plus terms in w")
        stack.extend(r for r in a.reads[src] if r is not None)
    if len(signs) != 1:
        raise refuse(f"its update is made of {len(signs)} signs of the gradient; the workers vote on one")
    (sign,) = signs
    if a.types[sign] != "tensor":
        raise refuse(f"{statement(sign)} is not one sign per element of w")
    cones = {s: _cone(a, [a.outputs[1 + program.state.index(s)]]) for s in a.live_state}
    for s, cone in cones.items():
        if sign in cone:
            raise refuse(f"its state {s!r} reads the sign; each worker's state must stay its own")
    local_part = _cone(a, [sign]).union(*cones.values())
    apply_from = tuple(sorted(i for i in seen if isinstance(i, int) and i != sign))
    return SignSplit(sign, tuple(sorted(local_part)), _apply_program(program, a, sign, apply_from), apply_from)


def _type(src, a: Analysis) -> str:
    return a.types[src] if isinstance(src, int) else ("scalar" if src in ("lr", "step") else "tensor")


def _cone(a: Analysis, roots) -> set[int]:
    """The statements of one step that the values `roots` are computed from (themselves included)."""
    out: set[int] = set()
    stack = [r for r in roots if isinstance(r, int)]
    while stack:
        i = stack.pop()
        if i not in out:
            out.add(i)
            stack.extend(r for r in a.reads[i] if isinstance(r, int))
    return out


def _apply_program(program: Program, a: Analysis, sign: int, order: tuple[int, ...]) -> Program:
    """The update's statements with the sign replaced by a state variable `vote`."""
    taken = set(program.params) | {s.target for s in program.body}
    vote = next(n for n in ("vote", *(f"vote{k}" for k in range(1, len(taken) + 2))) if n not in taken)
    body = tuple(replace(program.body[i], args=tuple(Var(vote) if a.reads[i][k] == sign else arg
                                                     for k, arg in enumerate(program.body[i].args)))
                 for i in order)
    update = a.outputs[0]
    inputs = tuple(p for p in INPUTS if p in program.params)
    returned = vote if update == sign else program.body[update].target
    return Program(program.name, inputs + (vote,), body, (returned, vote))


# ---------------------------------------------------------------------------------------------
# The generated module


def export_distributed(program: Program, class_name: str | None = None, vote: Vote = "majority",
                       source: str | None = None) -> str:
    """The source of a standalone module (torch only) with `program` as a Distributed Lion optimizer.

    `vote` is the constructor's default; `source` names the program's file in errors. Raises
    `OptsearchError` when the program is not sign-based (see `split_at_sign`) or an argument is
    bad, `ProgramError` if the program is invalid.
    """
    if vote not in VOTES:
        raise OptsearchError(f"the vote must be one of {', '.join(VOTES)}, got {vote!r}")
    a = check(program)
    try:
        split = split_at_sign(program, a)
    except OptsearchError as e:
        raise OptsearchError(f"{source}: {e}" if source else str(e)) from None
    base = class_name_for(program)
    cls = check_class_name(class_name or distributed_class_name(program))
    plain = plain_optimizer(program, f"{cls}Local" if base == cls else base)
    cg = plain.cg
    apply_cg = _apply_codegen(cg, split)
    apply = code_paths(apply_cg, "_apply")
    local_fn = f"_local_{program.name}"
    functions = "\n\n\n".join(["\n".join(_write_local(cg, split, local_fn)), apply.source])
    return assemble(_header(program, cls, plain.name), plain,
                    after=(_class_source(plain, apply_cg, split, cls, vote, local_fn, apply), functions,
                           runtime.source(runtime.DISTRIBUTED)),
                    what="distributed export")


def distributed_class_name(program: Program) -> str:
    """The default class name: `lion` -> `DistributedLion`."""
    return f"Distributed{class_name_for(program)}"


def _apply_codegen(cg: Codegen, split: SignSplit) -> Codegen:
    """The update program's Codegen, its constants named as in the whole program."""
    code = {(j, k): cg.constants.code[(i, k)] for j, i in enumerate(split.apply_from)
            for k in range(len(cg.program.body[i].args)) if (i, k) in cg.constants.code}
    used = set(code.values())
    hyper = [h for h in cg.constants.hyper if used.intersection(h.code_names)]
    constants = Constants(hyper, code, cg.constants.betas)
    return Codegen.of(split.apply, check(split.apply), constants)


def _write_local(cg: Codegen, split: SignSplit, fn: str) -> list[str]:
    """`def fn(...)`: this worker's signs and new state, one parameter tensor at a time."""
    body, a = cg.program.body, cg.a
    number = number_values(cg, split.local)
    finals = {s: f for s, f in cg.finals.items() if f != s}
    reads = {r for i in split.local for r in a.reads[i] if isinstance(r, str)}
    reads |= {f for f in finals.values() if isinstance(f, str) and f != "w"}
    lines = [*cg.def_lines(fn, per_tensor=True),
             '    """This worker\'s part of the step, on its own gradient: returns the signs to vote on',
             '    and updates the (local) state."""']
    if "g" in reads:
        lines += ["    if _maximize:", "        _grads = [-_grad for _grad in _grads]"]
    lines += ["    _signs = []", "    for _i, w in enumerate(_params):"]
    lists = {"g": "_grads", **{s: cg.state_list(s) for s in cg.program.state}}
    for r in sorted(reads - {"w", "lr"}, key=cg.program.params.index):
        lines.append("        step = _steps[_i].to(w)" if r == "step" else f"        {cg.name(r)} = {lists[r]}[_i]")
    for i in split.local:
        parts = [(t if src is None else cg.name(src), number[src] if src is not None else True)
                 for src, t in (cg.operand(i, p) for p in range(len(body[i].args)))]
        lines.append(f"        {cg.name(i)} = {strip_parens(format_expr(body[i].op, parts)[0])}")
        if i == split.sign:
            lines.append(f"        _signs.append({cg.name(i)})")
    # New state last; a state that takes another state's old value copies it first.
    text = {s: (f"{cg.state_list(f)}[_i].clone()" if f in cg.program.state else
                "_params[_i]" if f == "w" else cg.name(f)) for s, f in finals.items()}
    for s, f in finals.items():
        if f in cg.program.state:
            lines.append(f"        {cg.derived(s, 'new')} = {text[s]}")
            text[s] = cg.derived(s, "new")
    lines += [f"        {cg.state_list(s)}[_i].copy_({text[s]})" for s in finals]
    return lines + ["    return _signs"]


def _class_source(plain: PlainOptimizer, apply_cg: Codegen, split: SignSplit, cls: str, vote: str,
                  local_fn: str, apply: CodePaths) -> str:
    cg, base = plain.cg, plain.name
    hyper = cg.constants.hyper
    sig = ["self", "params", "lr: float = 1e-3", *hyper_signature(hyper)]
    sig += ["*", f'vote: str = "{vote}"', "process_group=None", "maximize: bool = False",
            "foreach: bool | None = None"]
    passed = ["params", "lr=lr"] + [f"{h.arg}={h.arg}" for h in hyper] + ["maximize=maximize", "foreach=foreach"]
    first, *doc = _doc(cg, apply_cg, split, base, vote)
    lines = [f"class {cls}({base}):", '    r"""' + first]
    lines += [f"    {line}" if line else "" for line in doc] + ['    """', ""]
    lines += [*wrap("    def __init__(", sig, "):"),
              f"        if vote not in {VOTES!r}:",
              '            raise ValueError(f"Invalid vote: expected \'majority\' or \'mean\', got {vote!r}")',
              *wrap("        super().__init__(", passed, ")"),
              "        self.vote = vote",
              "        self.process_group = process_group",
              "        self.bytes_sent = 0", "",
              *step_header("One step, taken by all workers together; `closure` re-evaluates the model, "
                           "returns the loss."),
              "        signs, work = [], []",
              "        for group in self.param_groups:"]
    state_lists, collect = collect_lines(cg, cls)
    lines += collect

    unpack, kw = group_kwargs(hyper)
    call = ["params", "grads"] + state_lists + (["steps"] if cg.uses_step else [])
    lines += [*unpack, *wrap(f"            signs += {local_fn}(", call + kw, ")"),
              "            work.append((group, params, grads, steps))",
              "        if not work:",
              "            return loss",
              "        votes, self.bytes_sent = _vote(signs, self.vote, self.process_group)",
              "        for group, params, grads, steps in work:"]
    vote_list = apply_cg.state_list(apply_cg.program.state[0])
    unpack, kw = group_kwargs(apply_cg.constants.hyper)
    call = ["params", "grads", vote_list] + (["steps"] if apply_cg.uses_step else [])
    lines += [f"            {vote_list}, votes = votes[:len(params)], votes[len(params):]", *unpack,
              *dispatch_lines(apply.single, apply.multi, call + kw),
              "        return loss"]
    return "\n".join(lines)


def _doc(cg: Codegen, apply_cg: Codegen, split: SignSplit, base: str, default_vote: str) -> list[str]:
    vote = apply_cg.program.state[0]
    sign = cg.program.body[split.sign].target
    out = [f"``{base}`` for data-parallel training: workers vote on the sign, 1 bit per element.", "",
           "Each worker (a process of a ``torch.distributed`` group, with its own data) runs on its own",
           "gradient, its state staying its own::", ""]
    out += [f"    {cg.named_statement(i)}" for i in split.local]
    out += ["", f"The workers exchange the sign ``{sign}``, packed 1 bit per element into one ``all_gather`` (a second",
            "bit plane marks exact zeros, sent only in steps where a worker has one), and each applies",
            f"the same update with ``{vote}`` the sign of the sum of their ``{sign}`` (``vote=\"majority\"``, ties",
            f"give 0) or its mean (``vote=\"mean\"``)::", ""]
    out += [f"    {apply_cg.named_statement(i)}" for i in apply_cg.live]
    out += [f"    w = w - {apply_cg.program.returns[0]}", "",
            "Parameters stay identical on every worker if they start identical. All workers must call",
            "``step`` together, with gradients for the same parameters (the exchange is collective).",
            f"Without an initialised process group (or with one worker) this is ``{base}``.",
            "``bytes_sent`` is what this worker sent in the last step: ceil(n / 8) + 1 bytes for n",
            "elements (an all-reduce of float32 gradients sends 4 n).", "",
            f"Args: those of ``{base}``, and", "",
            f'    vote: "majority" or "mean" of the workers\' signs (default: "{default_vote}").',
            "    process_group: the ``torch.distributed`` group that votes (default: the default group)."]
    return out


def _header(program: Program, cls: str, base: str) -> str:
    doc = f"""{cls}: the optsearch program `{program.name}` as a Distributed Lion optimizer.

Generated by `optsearch export --distributed`. It needs torch and nothing else. `{cls}` is for
data-parallel training with torch.distributed: workers exchange 1-bit signs instead of gradients
(do not also all-reduce the gradients, e.g. with DistributedDataParallel). `{base}` is the same
program for one process."""
    return header(doc, [cls, base], distributed=True)
