"""What the evaluation cascade buys and what it costs, on the quickstart's search (mlp/small).

Buys: 2 search seeds x cascade off/on, each searching for the same wall time with the inline
executor (one core); per run, programs assessed (full evaluations, or first stages with the
cascade), full evaluations, and the best search fitness, as rates per hour.

Costs: the false-drop rate. Every distinct program the cascade-off runs evaluated in full is also
trained on the cascade's first stage; of those a full evaluation puts in the top 10% of the sample,
the share whose first stage falls more than `margin` below the sample's best first stage (what
the cascade would drop, judged against the best first stage it could have seen: an upper bound).
Also the Spearman rank correlation of first-stage (compressed schedule) and full fitness.

    OMP_NUM_THREADS=1 python benchmarks/cascade.py [--seconds 150] [--seeds 0 1] [--margin 0.1]

Writes `benchmarks/results/cascade.json`.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from machine_info import machine  # noqa: E402

from optsearch.discovered import load_zoo  # noqa: E402
from optsearch.dsl import parse_program  # noqa: E402
from optsearch.evaluators import InlineExecutor  # noqa: E402
from optsearch.evaluators.evaluate import evaluate  # noqa: E402
from optsearch.search.evolution import Evolution  # noqa: E402
from optsearch.search.memory_store import MemoryStore  # noqa: E402
from optsearch.search.settings import CascadeSettings, EvaluationSettings, SearchSettings  # noqa: E402

TASK = "mlp/small"
LRS = (0.3, 1.0, 3.0)
CASCADE = CascadeSettings(fraction=0.25, margin=0.1)
MARGINS = (0.02, 0.05, 0.1, 0.2)    # the false-drop rate at other margins, from the same sample


def settings(seed: int, seconds: float, cascade: CascadeSettings | None) -> SearchSettings:
    """The quickstart's search (configs/quickstart.yaml) without its funnel."""
    evaluation = EvaluationSettings(tasks=(TASK,), seeds=1, lr_multipliers=LRS, time_limit=60, cascade=cascade)
    return SearchSettings(seed=seed, population=24, tournament=4, max_statements=20, length_penalty=0.001,
                          evaluations=None, seconds=seconds, evaluation=evaluation)


def search(seed: int, seconds: float, cascade: CascadeSettings | None) -> tuple[dict, MemoryStore]:
    store = MemoryStore()
    start, cpu = time.perf_counter(), time.process_time()
    outcome = Evolution(settings(seed, seconds, cascade), store, InlineExecutor(), load_zoo("adamw")).run()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    c = outcome.counters
    assessed = c.stage1_evaluations if cascade else c.evaluations
    return {"seed": seed, "cascade": cascade is not None, "wall_s": wall, "full_evaluations": c.evaluations,
            "stage1_evaluations": c.stage1_evaluations, "dropped": c.dropped, "programs_assessed": assessed,
            "cpu_s": cpu, "assessed_per_hour": assessed / wall * 3600, "full_per_hour": c.evaluations / wall * 3600,
            "assessed_per_cpu_hour": assessed / cpu * 3600,
            "best_fitness": outcome.best_fitness, "best_id": outcome.best_id}, store


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(x):
        order = sorted(range(len(x)), key=x.__getitem__)
        r = [0.0] * len(x)
        for k, i in enumerate(order):
            r[i] = k
        return r
    ra, rb = ranks(a), ranks(b)
    n = len(a)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra) ** 0.5
    vb = sum((y - mb) ** 2 for y in rb) ** 0.5
    return cov / (va * vb) if va and vb else float("nan")


def false_drops(stores: list[MemoryStore], limit: int, cascade: CascadeSettings) -> dict:
    """Train the sample's programs on the first stage; compare with their full fitness."""
    sample, seen = [], set()
    for store in stores:
        for row in store.programs("ranked", order="fitness"):
            if row.hash not in seen:
                seen.add(row.hash)
                sample.append(row)
    sample = sample[:limit] if limit else sample
    start = time.perf_counter()
    rows = []
    for row in sample:
        program = parse_program(row.text)
        r = evaluate(program, (TASK,), (0,), LRS, 60, "cpu", cascade.fraction)
        rows.append({"full": row.fitness, "stage1": r.fitness if r.status == "ok" else -math.inf})
    seconds = time.perf_counter() - start
    n_top = max(1, math.ceil(0.1 * len(rows)))
    top = sorted(range(len(rows)), key=lambda k: -rows[k]["full"])[:n_top]
    best1 = max(r["stage1"] for r in rows)
    dropped = [k for k in range(len(rows)) if rows[k]["stage1"] < best1 - cascade.margin]
    finite = [r for r in rows if math.isfinite(r["stage1"])]
    by_margin = {}
    for margin in MARGINS:
        out = [k for k in range(len(rows)) if rows[k]["stage1"] < best1 - margin]
        by_margin[str(margin)] = {"false_drop_rate": sum(k in out for k in top) / n_top, "dropped_of_sample": len(out)}
    return {"sample": len(rows), "top10": n_top, "top10_dropped": sum(k in dropped for k in top), "by_margin": by_margin,
            "false_drop_rate": sum(k in dropped for k in top) / n_top, "dropped_of_sample": len(dropped),
            "spearman_compressed": spearman([r["stage1"] for r in finite], [r["full"] for r in finite]),
            "stage1_seconds": seconds, "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=150.0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--sample", type=int, default=0, help="programs in the false-drop sample (0: all)")
    p.add_argument("--margin", type=float, default=CASCADE.margin)
    a = p.parse_args()
    on = replace(CASCADE, margin=a.margin)
    torch.set_num_threads(1)
    runs, off_stores = [], []
    for seed in a.seeds:
        for cascade in (None, on):
            run, store = search(seed, a.seconds, cascade)
            runs.append(run)
            if cascade is None:
                off_stores.append(store)
            print(json.dumps(run))
    drops = false_drops(off_stores, a.sample, on)
    ratio = [on["assessed_per_hour"] / off["assessed_per_hour"] for off, on in zip(runs[::2], runs[1::2])]
    out = {"machine": machine(), "task": TASK, "lr_multipliers": LRS, "cascade": vars(on),
           "seconds_per_search": a.seconds, "runs": runs, "assessed_per_hour_ratio": ratio, "false_drops": drops}
    path = ROOT / "benchmarks" / "results" / "cascade.json"
    path.write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(f"{'seed':>4} {'cascade':>7} {'assessed/h':>10} {'per cpu-h':>9} {'full/h':>7} {'dropped':>7} {'best':>8}")
    for r in runs:
        print(f"{r['seed']:>4} {'on' if r['cascade'] else 'off':>7} {r['assessed_per_hour']:>10.0f} "
              f"{r['assessed_per_cpu_hour']:>9.0f} {r['full_per_hour']:>7.0f} {r['dropped']:>7} {r['best_fitness']:>+8.4f}")
    print(f"assessed per hour, on/off: {', '.join(f'{x:.2f}x' for x in ratio)}")
    print(f"false drops: {drops['top10_dropped']} of the top {drops['top10']} of {drops['sample']} programs "
          f"({drops['false_drop_rate']:.0%}); Spearman(stage 1, full) {drops['spearman_compressed']:.2f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
