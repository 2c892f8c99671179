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
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import torch

import optsearch
from optsearch.discovered import zoo_names, zoo_path
from optsearch.dsl import (
    OPS, OptsearchError, canonicalize, check, format_statement, print_program, structural_hash, variable_types,
)
from optsearch.dsl.export import export_program
from optsearch.evaluators import DEFAULT_LR_MULTIPLIERS, evaluate, resolve_task
from optsearch.evaluators.calibrate import calibrate
from optsearch.programs import program_source, resolve_program
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

    ev = command("eval", cmd_eval, "train a program on proxy tasks and score it against tuned AdamW")
    ev.add_argument("program", metavar="PROGRAM", help=PROGRAM_HELP)
    ev.add_argument("--task", action="append", metavar="T", help="a task name (repeatable; default: quadratic)")
    ev.add_argument("--size", default="small", choices=SIZES)
    ev.add_argument("--seeds", type=int, default=1, metavar="N", help="number of seeds (0..N-1)")
    ev.add_argument("--lr-multipliers", type=float, nargs="+", metavar="X", default=list(DEFAULT_LR_MULTIPLIERS),
                    help="multiples of the task's base lr to try; the best counts (default: %(default)s)")
    ev.add_argument("--time-limit", type=float, metavar="S", help="seconds before the evaluation stops (timeout)")
    _add_device_options(ev)
    ev.add_argument("--json", action="store_true", help="print JSON instead of a table")

    tasks = command("tasks", cmd_tasks, "list the proxy tasks with their sizes and budgets")
    tasks.add_argument("--json", action="store_true", help="print JSON instead of a table")

    cal = command("calibrate", cmd_calibrate, "tune AdamW on tasks and store the reference scores fitness uses")
    cal.add_argument("--task", action="append", metavar="T", help="a task name (repeatable; default: all)")
    cal.add_argument("--size", action="append", choices=SIZES, help="sizes (repeatable; default: small)")
    cal.add_argument("--seeds", type=int, default=3, metavar="N", help="number of seeds (0..N-1)")
    _add_device_options(cal)

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
    print(_table([("name", "signature", "kind", "summary")]
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
    program = resolve_program(args.program)
    source = export_program(program, args.class_name)  # checks the class name
    path = Path(args.output)
    _write_atomically(path, source)
    class_name = args.class_name or _first_class_name(source)
    print(f"wrote {path} (class {class_name}, needs only torch)")
    print(f"use it: from {_module_name(path)} import {class_name}; "
          f"opt = {class_name}(model.parameters(), lr=1e-3)")


def cmd_eval(args: argparse.Namespace) -> None:
    program = resolve_program(args.program)
    _set_threads(args.threads)
    device = _device(args.device)
    tasks = [_task(name, args.size, device) for name in (args.task or ["quadratic"])]
    if any(m <= 0 for m in args.lr_multipliers):
        raise OptsearchError(f"--lr-multipliers must be > 0, got {args.lr_multipliers}")
    result = evaluate(program, tasks, seeds=range(args.seeds), lr_multipliers=args.lr_multipliers,
                      time_limit=args.time_limit, device=device)
    if args.json:
        print(json.dumps({"program": program.name, **result.to_json()}, indent=2))
        return
    rows = [("task", "size", "status", "metric", "AdamW", "fitness", "best lr x", "per seed", "seconds")]
    for s in result.scores:
        rows.append((s.task, s.size, s.status, _num(s.metric), _num(s.reference), _num(s.fitness, "+.4f"),
                     " ".join(f"{x:g}" for x in s.best_lr), " ".join(_num(x) for x in s.per_seed),
                     f"{s.seconds:.1f}"))
    print(_table(rows))
    print(f"{program.name}: fitness {_num(result.fitness, '+.4f')} (0 = tuned AdamW, higher is better), "
          f"status {result.status}, {result.seconds:.1f}s")
    if result.error:
        print(f"note: {result.error.splitlines()[0]}")


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
    print(_table([("task", "size", "AdamW ref", "budget")]
                 + [(r["task"], r["size"], _num(r["adamw_reference"]), r["budget"]) for r in rows]))
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
    rows = [{"name": name, "description": _zoo_description(name)} for name in zoo_names()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(_table([(r["name"], r["description"]) for r in rows]))


# --- helpers ----------------------------------------------------------------------------

def _table(rows: list[tuple[str, ...]]) -> str:
    """Rows as left-aligned columns, two spaces apart; the last column is not padded."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join([c.ljust(w) for c, w in zip(r, widths)] + [r[-1]]) for r in rows)


def _check_text(r: dict) -> str:
    def indent(text: str) -> str:
        return "\n".join("    " + line for line in text.rstrip("\n").splitlines())

    state = ", ".join(s if s in r["live_state"] else f"{s} (never reaches the update)" for s in r["state"])
    dead = "\n".join(f"    line {d['line']}: {d['statement']}" for d in r["dead"])
    parts = [
        f"{r['source']}: ok",
        "program:", indent(r["program"]),
        "canonical form:", indent(r["canonical"]),
        f"hash: {r['hash']}",
        "types:", indent(_table([(name, t) for name, t in r["types"].items()])),
        f"state: {state or 'none'}",
        f"dead statements: {len(r['dead']) or 'none'}" + (f"\n{dead}" if dead else ""),
    ]
    return "\n".join(parts)


def _zoo_description(name: str) -> str:
    """First line of the zoo program's docstring, read with `ast` (never executed)."""
    try:
        tree = ast.parse(zoo_path(name).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return ""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            doc = ast.get_docstring(node) or ""
            return doc.strip().splitlines()[0] if doc.strip() else ""
    return ""


def _write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file and a rename: never a half-written file."""
    if path.is_dir():
        raise OptsearchError(f"{path} is a directory; -o takes the .py file to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OptsearchError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # what a plain open() would have given
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OptsearchError(f"cannot write {path}: {e.strerror or e}") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _add_device_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to train (auto: cuda if present)")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's)")


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


def _num(x: float | None, fmt: str = ".4f") -> str:
    if x is None:
        return "-"
    return format(x, fmt) if math.isfinite(x) else ("-inf" if x < 0 else "inf")


def _first_class_name(source: str) -> str:
    return next(node.name for node in ast.parse(source).body if isinstance(node, ast.ClassDef))


def _module_name(path: Path) -> str:
    return path.stem if path.suffix == ".py" and path.stem.isidentifier() else "module"
