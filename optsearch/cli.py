"""The `optsearch` command line: one small function per command.

User errors (`OptsearchError`: bad programs, unknown names, missing runs) become one line on
stderr and exit code 2, here and nowhere else; anything else is a bug and raises normally.
"""
from __future__ import annotations

import argparse
import ast
import json
import math
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import torch

import optsearch
from optsearch.discovered import zoo_description, zoo_names, zoo_role_names
from optsearch.dsl import (
    OPS, OptsearchError, canonicalize, check, format_statement, print_program, structural_hash,
    variable_types,
)
from optsearch.dsl import ROLES, RoleProgram, program_for
from optsearch.dsl.export import (VOTES, distributed_class_name, export_distributed, export_program, export_subspace,
                                  subspace_class_name)
from optsearch.dsl.export.roles import export_candidate
from optsearch.dsl.roles import role_description
from optsearch.dsl.subspace import Subspace, subspace_from_options, subspace_program
from optsearch.evaluators import DEFAULT_LR_MULTIPLIERS, evaluate, resolve_task
from optsearch.evaluators.calibrate import calibrate
from optsearch.cli_runs import add_run_commands
from optsearch.display import indent, json_safe, num, table
from optsearch.files import write_atomically
from optsearch.programs import program_source, resolve_candidate, resolve_program
from optsearch.proxy_tasks import SIZES, TASKS, Task
from optsearch.proxy_tasks.references import REFERENCES_PATH, save_reference

USER_ERROR = 2
PROGRAM_HELP = "a program file, a zoo name (`optsearch zoo`), or runs/NAME#ID"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 2 user error)."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except OptsearchError as e:
        message = " ".join(str(e).splitlines())  # always one line
        print(f"optsearch: error: {message}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print("optsearch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `optsearch ops | head`: stop quietly, as the Python docs advise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optsearch",
        description="Discover deep-learning optimizers by evolutionary program search.",
        epilog=f"PROGRAM is {PROGRAM_HELP}.",
    )
    parser.add_argument("--version", action="version", version=f"optsearch {optsearch.__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def command(name: str, run: Callable[[argparse.Namespace], int | None], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        return sub

    ops = command("ops", cmd_ops, "list the ops programs are written with")
    ops.add_argument("--json", action="store_true", help="print JSON instead of a table")

    chk = command("check", cmd_check, "validate a program; show its canonical form, hash, types and dead code")
    chk.add_argument("program", metavar="PROGRAM", help=PROGRAM_HELP)
    chk.add_argument("--json", action="store_true", help="print JSON instead of text")

    exp = command("export", cmd_export, "write a program as a standalone torch.optim.Optimizer module")
    exp.add_argument("program", metavar="PROGRAM", help=PROGRAM_HELP)
    exp.add_argument("-o", "--output", required=True, metavar="FILE", help="the .py file to write")
    exp.add_argument("--class-name", metavar="NAME", help="the optimizer class's name (default: from the program's name)")
    exp.add_argument("--distributed", action="store_true",
                     help="Distributed Lion for torch.distributed data parallelism: workers exchange 1-bit signs "
                          "(sign-based programs only)")
    exp.add_argument("--vote", choices=VOTES, help="with --distributed: how the workers' signs combine "
                                                   "(default: majority)")
    _add_subspace_options(exp)

    ev = command("eval", cmd_eval, "train a program on proxy tasks and score it against tuned AdamW")
    ev.add_argument("program", metavar="PROGRAM", help=PROGRAM_HELP)
    ev.add_argument("--task", action="append", metavar="T", help="a task name (repeatable; default: quadratic)")
    ev.add_argument("--size", default="small", choices=SIZES)
    ev.add_argument("--seeds", type=int, default=1, metavar="N", help="number of seeds (0..N-1)")
    ev.add_argument("--lr-multipliers", type=float, nargs="+", metavar="X", default=list(DEFAULT_LR_MULTIPLIERS),
                    help="multiples of the task's base lr to try; the best counts (default: %(default)s)")
    ev.add_argument("--time-limit", type=float, metavar="S", help="seconds before the evaluation stops (timeout)")
    _add_subspace_options(ev)
    _add_device_options(ev)
    ev.add_argument("--json", action="store_true", help="print JSON instead of a table")

    simp = command("simplify", cmd_simplify, "shorten a program: exact rewrites, then (with --task) removals "
                   "and rounded constants that keep fitness within seed noise")
    simp.add_argument("program", metavar="PROGRAM", help=PROGRAM_HELP)
    simp.add_argument("--task", action="append", metavar="T",
                      help="a task to measure fitness on (repeatable; without it only exact rewrites run)")
    simp.add_argument("--size", default="small", choices=SIZES)
    simp.add_argument("--seeds", type=int, default=3, metavar="N", help="seeds (0..N-1); their spread is the noise "
                      "fitness may drop by (default: %(default)s)")
    simp.add_argument("--tolerance", type=float, metavar="X",
                      help="how far fitness may drop (instead of the seed noise)")
    simp.add_argument("--lr-multipliers", type=float, nargs="+", metavar="X", default=list(DEFAULT_LR_MULTIPLIERS),
                      help="multiples of the task's base lr to try; the best counts (default: %(default)s)")
    simp.add_argument("-o", "--output", metavar="FILE", help="write the simplified program to this .py file")
    _add_device_options(simp)
    simp.add_argument("--json", action="store_true", help="print JSON instead of text")

    tasks = command("tasks", cmd_tasks, "list the proxy tasks with their sizes and budgets")
    tasks.add_argument("--json", action="store_true", help="print JSON instead of a table")

    cal = command("calibrate", cmd_calibrate, "tune AdamW on tasks and store the reference scores fitness uses")
    cal.add_argument("--task", action="append", metavar="T", help="a task name (repeatable; default: all)")
    cal.add_argument("--size", action="append", choices=SIZES, help="sizes (repeatable; default: small)")
    cal.add_argument("--seeds", type=int, default=3, metavar="N", help="number of seeds (0..N-1)")
    _add_device_options(cal)

    add_run_commands(command)

    zoo = command("zoo", cmd_zoo, "list the zoo programs (known optimizers) by name")
    zoo.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


# --- commands ---------------------------------------------------------------------------

def cmd_ops(args: argparse.Namespace) -> None:
    rows = [{"name": op.name, "signature": op.signature, "kind": op.kind, "summary": op.summary,
             "commutative": op.commutative, "idempotent": op.idempotent} for op in OPS.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(table([("name", "signature", "kind", "summary")]
                 + [(r["name"], r["signature"], r["kind"], r["summary"]) for r in rows]))


def cmd_check(args: argparse.Namespace) -> None:
    program = resolve_program(args.program)
    analysis = check(program)
    canonical = canonicalize(program, analysis)
    report = {
        "source": program_source(args.program),
        "name": program.name,
        "program": print_program(program),
        "canonical": print_program(canonical),
        "hash": structural_hash(program),
        "types": variable_types(program, analysis),
        "state": list(program.state),
        "live_state": list(analysis.live_state),
        "dead": [{"line": program.body[i].line, "statement": format_statement(program.body[i])}
                 for i in analysis.dead],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(_check_text(report))


def cmd_export(args: argparse.Namespace) -> None:
    program = resolve_candidate(args.program)
    if isinstance(program, RoleProgram):
        return _export_roles(args, program)
    subspace = _subspace(args)
    if args.vote and not args.distributed:
        raise OptsearchError("--vote needs --distributed")
    if args.distributed and subspace is not None:
        raise OptsearchError("--distributed and --subspace-rank cannot be combined yet")
    if args.distributed:
        source = export_distributed(program, args.class_name, args.vote or "majority", program_source(args.program))
    elif subspace is not None:
        source = export_subspace(program, subspace, args.class_name)
    else:
        source = export_program(program, args.class_name)  # checks the class name
    path = Path(args.output)
    write_atomically(path, source)
    class_name = args.class_name or (distributed_class_name(program) if args.distributed else
                                     _first_class_name(source) if subspace is None else subspace_class_name(program))
    print(f"wrote {path} (class {class_name}, needs only torch)")
    print(f"use it: from {_module_name(path)} import {class_name}; "
          f"opt = {class_name}(model.parameters(), lr=1e-3)")
    if args.distributed:
        print("in every worker, after torch.distributed.init_process_group (e.g. under torchrun); "
              "do not also all-reduce the gradients")


def _export_roles(args: argparse.Namespace, candidate: RoleProgram) -> None:
    """`optsearch export` of a role candidate: one optimizer, a program per role."""
    if args.distributed or args.vote or _subspace(args) is not None:
        raise OptsearchError(f"{args.program}: --distributed, --vote and --subspace-rank take a single program, "
                             f"not a role candidate ({role_description(candidate)})")
    source = export_candidate(candidate, args.class_name)  # checks the class name
    path = Path(args.output)
    write_atomically(path, source)
    class_name = _first_class_name(source)
    print(f"wrote {path} (class {class_name}, one program per role: {role_description(candidate)}; needs only torch)")
    print(f"use it: from {_module_name(path)} import {class_name}; opt = {class_name}(model.parameters(), lr=1e-3) "
          "(a param group may set \"role\"; else 2-D and up is hidden, the rest vector)")


def cmd_eval(args: argparse.Namespace) -> None:
    program = resolve_candidate(args.program)  # a program, or a role candidate (one program per role)
    _set_threads(args.threads)
    device = _device(args.device)
    tasks = [_task(name, args.size, device) for name in (args.task or ["quadratic"])]
    if any(m <= 0 for m in args.lr_multipliers):
        raise OptsearchError(f"--lr-multipliers must be > 0, got {args.lr_multipliers}")
    subspace = _subspace(args)
    if subspace is not None and isinstance(program, RoleProgram):
        raise OptsearchError(f"{program_source(args.program)}: --subspace-rank runs a single program; "
                             "a role candidate cannot be combined with it yet")
    step_object = program if subspace is None else subspace_program(program, subspace)
    result = evaluate(step_object, tasks, seeds=range(args.seeds), lr_multipliers=args.lr_multipliers,
                      time_limit=args.time_limit, device=device)
    if args.json:
        extra = {"subspace": asdict(subspace)} if subspace is not None else {}
        if isinstance(program, RoleProgram):
            extra["roles"] = {r: program_for(program, r).name for r in ROLES}
        print(json.dumps({"program": program.name, **extra, **result.to_json()}, indent=2))
        return
    rows = [("task", "size", "status", "metric", "AdamW", "fitness", "state/param", "best lr x", "per seed",
             "seconds")]
    for s in result.scores:
        rows.append((s.task, s.size, s.status, num(s.metric), num(s.reference), num(s.fitness, "+.4f"),
                     num(s.state_per_param, ".3g"), " ".join(f"{x:g}" for x in s.best_lr),
                     " ".join(num(x) for x in s.per_seed), f"{s.seconds:.1f}"))
    print(table(rows))
    if subspace is not None:
        print(f"in a low-rank subspace: {subspace.describe()}")
    if isinstance(program, RoleProgram):
        print(f"roles: {role_description(program)} (the lr multiplier scales every role's lr)")
    memory = "" if result.state_per_param is None else \
        f", optimizer state {num(result.state_per_param, '.3g')} numbers per parameter"
    print(f"{program.name}: fitness {num(result.fitness, '+.4f')} (0 = tuned AdamW, higher is better){memory}, "
          f"status {result.status}, {result.seconds:.1f}s")
    if result.error:
        print(f"note: {result.error.splitlines()[0]}")


def cmd_simplify(args: argparse.Namespace) -> None:
    from optsearch.search.simplify import simplify  # the search layer, loaded only when needed
    program = resolve_program(args.program)
    if args.seeds < 1:
        raise OptsearchError(f"--seeds must be >= 1, got {args.seeds}")
    if args.tolerance is not None and not (args.tolerance >= 0 and math.isfinite(args.tolerance)):
        raise OptsearchError(f"--tolerance must be a number >= 0, got {args.tolerance}")
    if any(m <= 0 for m in args.lr_multipliers):
        raise OptsearchError(f"--lr-multipliers must be > 0, got {args.lr_multipliers}")
    _set_threads(args.threads)
    device = _device(args.device)
    tasks = [_task(name, args.size, device) for name in args.task or []]
    progress = None if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    r = simplify(program, tasks, args.seeds, args.lr_multipliers, args.tolerance, progress)
    source = program_source(args.program)
    if args.output:
        header = "# simplified by `optsearch simplify` from " + " ".join(source.splitlines()) + "\n"
        write_atomically(Path(args.output), header + print_program(r.after))
    report = {"source": source, "before": print_program(r.before), "after": print_program(r.after),
              "statements_before": len(r.before.body), "statements_after": len(r.after.body),
              "static_steps": r.static_steps, "removed": r.removed, "rounded": r.rounded,
              "fitness_before": r.fitness_before, "fitness_after": r.fitness_after, "noise": r.noise,
              "seeds": args.seeds if tasks else None, "tasks": [f"{t.name}/{t.size}" for t in tasks],
              "evaluations": r.evaluations, "output": args.output}
    if args.json:
        print(json.dumps(json_safe(report),
                         indent=2))
        return
    print(_simplify_text(report))


def cmd_tasks(args: argparse.Namespace) -> None:
    rows = []
    for info in TASKS.values():
        for size in info.sizes:
            task = _task(info.name, size)
            ref = task.reference
            rows.append({"task": info.name, "size": size, "budget": task.budget.description,
                         "adamw_reference": ref, "summary": info.summary})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(table([("task", "size", "AdamW ref", "budget")]
                 + [(r["task"], r["size"], num(r["adamw_reference"]), r["budget"]) for r in rows]))
    for info in TASKS.values():
        print(f"  {info.name}: {info.summary}")


def cmd_calibrate(args: argparse.Namespace) -> None:
    _set_threads(args.threads)
    device = _device(args.device)
    for name in args.task or list(TASKS):
        for size in args.size or ["small"]:
            task = _task(name, size, device)
            ref = calibrate(task, seeds=range(args.seeds), progress=lambda line: print(line, flush=True))
            save_reference(f"{name}/{size}", ref)
            print(f"{name}/{size}: AdamW reference {ref.metric:.4f} at lr {ref.lr:.3g}, weight decay "
                  f"{ref.weight_decay:g} -> {REFERENCES_PATH}", flush=True)


def cmd_zoo(args: argparse.Namespace) -> None:
    rows = [{"name": name, "kind": "program", "description": zoo_description(name)} for name in zoo_names()]
    rows += [{"name": name, "kind": "roles", "description": "one program per role: " + zoo_description(name)}
             for name in zoo_role_names()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(table([(r["name"], r["description"]) for r in rows]))


# --- helpers ----------------------------------------------------------------------------

def _check_text(r: dict) -> str:
    state = ", ".join(s if s in r["live_state"] else f"{s} (never reaches the update)" for s in r["state"])
    dead = "\n".join(f"    line {d['line']}: {d['statement']}" for d in r["dead"])
    parts = [
        f"{r['source']}: ok",
        "program:", indent(r["program"]),
        "canonical form:", indent(r["canonical"]),
        f"hash: {r['hash']}",
        "types:", indent(table([(name, t) for name, t in r["types"].items()])),
        f"state: {state or 'none'}",
        f"dead statements: {len(r['dead']) or 'none'}" + (f"\n{dead}" if dead else ""),
    ]
    return "\n".join(parts)


def _simplify_text(r: dict) -> str:
    parts = [f"{r['source']}: {r['statements_before']} statements -> {r['statements_after']}",
             "before:", indent(r["before"]),
             "after:", indent(r["after"]),
             f"exact rewrites: {len(r['static_steps']) or 'none'}", indent(r["static_steps"])]
    if r["tasks"]:
        parts += [f"removed (fitness held): {len(r['removed']) or 'none'}", indent(r["removed"]),
                  f"rounded (fitness held): {len(r['rounded']) or 'none'}", indent(r["rounded"]),
                  f"fitness on {', '.join(r['tasks'])} ({r['seeds']} seed{'s' * (r['seeds'] != 1)}; "
                  f"0 = tuned AdamW, higher is better): "
                  f"before {num(r['fitness_before'], '+.4f')}, after {num(r['fitness_after'], '+.4f')}, "
                  f"allowed drop {num(r['noise'], '.4f')}; {r['evaluations']} evaluations"]
    else:
        parts.append("exact rewrites only (behaviour unchanged); add --task T to also remove statements "
                     "and round constants where fitness holds")
    if r["output"]:
        parts.append(f"wrote {r['output']}")
    return "\n".join(p for p in parts if p)


def _add_device_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to train (auto: cuda if present)")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's)")


def _add_subspace_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("low-rank subspace (GaLore / Online Subspace Descent)")
    g.add_argument("--subspace-rank", metavar="R", help="run the program on rank-R projections of matrix gradients")
    g.add_argument("--projection", metavar="KIND", help="how the projection moves: online (default; an Adam step "
                   "per step, Online Subspace Descent) or svd (GaLore: SVD every K steps)")
    g.add_argument("--subspace-update-every", metavar="K", help="svd: steps between SVD refreshes (default 200)")
    g.add_argument("--subspace-lr", metavar="X", help="online: step size of the projection's update (default 0.005)")


def _subspace(args: argparse.Namespace) -> Subspace | None:
    """The `--subspace-*` options as a transform (None without `--subspace-rank`); one-line errors."""
    def number(flag: str, text: str | None, kind: type):
        if text is None:
            return None
        try:
            return kind(text)
        except ValueError:
            raise OptsearchError(f"{flag} must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None

    rank = number("--subspace-rank", args.subspace_rank, int)
    every = number("--subspace-update-every", args.subspace_update_every, int)
    lr = number("--subspace-lr", args.subspace_lr, float)
    if rank is None:
        if args.projection is not None or every is not None or lr is not None:
            raise OptsearchError("--projection, --subspace-update-every and --subspace-lr need --subspace-rank R")
        return None
    if rank < 1:
        raise OptsearchError(f"--subspace-rank must be >= 1, got {rank}")
    return subspace_from_options(rank, args.projection or "online", every, lr)


def _device(choice: str) -> str:
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise OptsearchError("--device cuda: no CUDA device is available")
    return choice


def _set_threads(n: int | None) -> None:
    if n is not None:
        if n < 1:
            raise OptsearchError(f"--threads must be >= 1, got {n}")
        torch.set_num_threads(n)


def _task(name: str, size: str, device: str = "cpu") -> Task:
    try:
        return resolve_task((name, size), device)
    except ValueError as e:
        raise OptsearchError(str(e)) from None


def _first_class_name(source: str) -> str:
    return next(node.name for node in ast.parse(source).body if isinstance(node, ast.ClassDef))


def _module_name(path: Path) -> str:
    return path.stem if path.suffix == ".py" and path.stem.isidentifier() else "module"
