"""Evaluate chosen neighbours of a config's warm start directly, as its search would evaluate them.

A search's sweep (`search.sweep_after`) tries every single-edit neighbour of a stalled best in a
fixed order (`optsearch.search.mutate.neighbours`). At a small budget it may stop before reaching a
neighbour that matters; this says what that neighbour would have scored. Each neighbour is
trained like the run's candidates (its roles beside the fixed programs, the run's tasks, seed 0,
its lr grid) and written with its index and program.

    python benchmarks/sweep_neighbours.py configs/beat_adamw.yaml --op orthogonalize [--index 93 137]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from optsearch.config import load_config
from optsearch.dsl import print_candidate, print_program
from optsearch.evaluators import EvalJob, run_jobs
from optsearch.run import resolve_programs, run_candidate
from optsearch.search.mutate import neighbours


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--op", help="only the neighbours that wrap a value in this op")
    ap.add_argument("--index", type=int, nargs="+", help="only these neighbours (positions in the sweep)")
    ap.add_argument("--out", default="benchmarks/results/beat_adamw/sweep_neighbours.json")
    a = ap.parse_args()
    config = load_config(a.config)
    s, e = config.search, config.search.evaluation
    warm, _ = resolve_programs(config)          # with roles: the evolved role's program
    every = neighbours(warm, s.ops)
    chosen = [(k, p) for k, (p, name) in enumerate(every)
              if (a.index is None or k in a.index)
              and (a.op is None or (name == "wrap" and any(t.op == a.op for t in p.body)))]
    if not chosen:
        sys.exit("no neighbour matches")
    jobs = [EvalJob(print_candidate(run_candidate(config, p)), tuple(e.tasks), (0,), tuple(e.lr_multipliers),
                    None, e.device, e.subspace) for _, p in chosen]
    rows = []
    for (k, p), r in zip(chosen, run_jobs(jobs, 1, lambda i, r: print(
            f"neighbour {chosen[i][0]} of {len(every)}: fitness {r.fitness:+.4f} "
            + " ".join(f"{t.task}/{t.size} {t.fitness:+.4f} (lr x{t.best_lr[0]:g})" for t in r.scores), flush=True))):
        rows.append({"index": k, "of": len(every), "program": print_program(p), "status": r.status,
                     "fitness": r.fitness, "scores": {f"{t.task}/{t.size}": t.fitness for t in r.scores},
                     "best_lr": {f"{t.task}/{t.size}": t.best_lr for t in r.scores}})
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"config": a.config, "neighbours": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
