"""Where known optimizers stand against tuned AdamW on every proxy task.

`optsearch eval` of adamw, lion, signum, sgd and a deliberately divergent program on each task
(best of the default lr multipliers per seed, mean over seeds), one torch thread; `--frontier`
adds the frontier zoo (muon_adamw, cautious_adamw ... prodigy). Writes `benchmarks/results/zoo_eval.json`
(or `--out`) and prints a markdown table for the README.

    python benchmarks/zoo_eval.py [--size small] [--seeds 1] [--tasks lm vit ...] [--programs lion ...]
                                  [--frontier] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

from optsearch.discovered import load_zoo_candidate
from optsearch.dsl import parse_program
from optsearch.evaluators import DEFAULT_LR_MULTIPLIERS, evaluate
from optsearch.proxy_tasks import TASKS, get_task

RESULTS = Path(__file__).parent / "results" / "zoo_eval.json"
DIVERGENT = parse_program("""
def divergent(w, g, lr):
    u = exp(g)
    u = u * 1e30
    return u
""")
PROGRAMS = ["adamw", "lion", "signum", "sgd", "divergent"]
FRONTIER = ["muon_adamw", "cautious_adamw", "cautious_lion", "ademamix", "adopt", "laprop", "adan", "mars",
            "schedulefree_adamw", "prodigy"]


def lr_multipliers(program: str, task) -> tuple[float, ...]:
    """The lr grid, as multiples of the task's AdamW lr. Prodigy's lr multiplies its own step-size
    estimate d (prodigyopt's default is 1), so its grid is around lr 1 instead."""
    if program == "prodigy":
        return tuple(m / task.budget.lr for m in (0.1, 0.3, 1.0, 3.0))
    return tuple(DEFAULT_LR_MULTIPLIERS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="small")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    ap.add_argument("--programs", nargs="+", default=PROGRAMS)
    ap.add_argument("--frontier", action="store_true", help="also evaluate the frontier zoo")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"the JSON file to write (default {RESULTS})")
    args = ap.parse_args()
    if args.frontier:
        args.programs += [p for p in FRONTIER if p not in args.programs]
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.tasks:
        task = get_task(name, args.size)
        for prog in args.programs:
            program = DIVERGENT if prog == "divergent" else load_zoo_candidate(prog)
            r = evaluate(program, [task], seeds=range(args.seeds), lr_multipliers=lr_multipliers(prog, task))
            s = r.scores[0]
            rows.append({"task": name, "size": args.size, "program": prog, "status": r.status,
                         "metric": s.metric, "reference": s.reference, "fitness": r.fitness,
                         "best_lr_multiplier": s.best_lr, "steps": s.steps, "seconds": r.seconds,
                         "error": (s.error or "").splitlines()[0] if s.error else None})
            print(f"{name:<14} {prog:<10} {r.status:<9} metric {s.metric:.4f} fitness {r.fitness:+.4f} "
                  f"lr x{s.best_lr} steps {s.steps} {r.seconds:.1f}s", flush=True)
            _write(args, rows)  # after every row: a long run stopped early keeps what it measured
    print()
    print("| task | " + " | ".join(args.programs) + " | seconds per evaluation |")
    print("| --- | " + " | ".join("---" for _ in args.programs) + " | --- |")
    for name in args.tasks:
        cells = []
        for prog in args.programs:
            row = next(r for r in rows if r["task"] == name and r["program"] == prog)
            f = row["fitness"]
            why = "hopeless" if (row["error"] or "").startswith("hopeless") else row["status"]
            cells.append(f"{f:+.3f}" if math.isfinite(f) else f"{why} (step {row['steps']})")
        secs = [r["seconds"] for r in rows if r["task"] == name and r["program"] != "divergent"]
        print(f"| {name} | " + " | ".join(cells) + f" | {min(secs):.1f}-{max(secs):.1f} |")


def _write(args, rows: list[dict]) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    safe = [{k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in row.items()} for row in rows]
    args.out.write_text(json.dumps({
        "benchmark": "zoo_eval", "torch": torch.__version__, "python": platform.python_version(),
        "threads": args.threads, "seeds": args.seeds, "size": args.size,
        "lr_multipliers": "default (1/30, 0.1, 0.3, 1, 3); prodigy: lr 0.1, 0.3, 1, 3", "date": time.strftime("%Y-%m-%d"), "rows": safe,
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
