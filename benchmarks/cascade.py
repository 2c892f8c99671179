"""What the evaluation cascade buys and what it costs, on the quickstart's search (mlp/small).

Buys: 2 search seeds x cascade off/on, each searching for the same wall time with the inline
executor (one core); per run, programs assessed (full evaluations, or first stages with the
cascade), full evaluations, and the best search fitness, as rates per hour.

Costs: the false-drop rate. The cascade-off runs' full evaluations are replayed through the
cascade's rule: every program is also trained on the first stage, and compared with the first stage
of its run's best program before it (the cascade's bar). Of the sample's top 10% by full fitness,
the share the rule would have dropped, at the run's margin and at others. Also the Spearman rank
correlation of first-stage (compressed schedule) and full fitness.

    OMP_NUM_THREADS=1 python benchmarks/cascade.py [--seconds 150] [--seeds 0 1] [--margin 0.1] [--out cascade.json]

Writes `benchmarks/results/cascade.json` (or `--out`).
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


def false_drops(stores: list[MemoryStore], cascade: CascadeSettings) -> dict:
    """Replay the cascade-off runs' full evaluations through the cascade's rule: each program's first
    stage against the first stage of the run's best program before it (the bar the cascade would
    have used), at several margins; the false drops are those of the sample's top 10% by full fitness."""
    stage1: dict[str, float] = {}      # by canonical hash: a program shared by runs is trained once
    start = time.perf_counter()
    replay = []                        # (hash, full fitness, bar) in each run's evaluation order
    for store in stores:
        best, bar = -math.inf, None
        for row in store.programs("evaluated", order="eval_index"):
            if row.hash not in stage1:
                r = evaluate(parse_program(row.text), (TASK,), (0,), LRS, 60, "cpu", cascade.fraction)
                stage1[row.hash] = r.fitness if r.status == "ok" else -math.inf
            replay.append((row.hash, row.fitness, bar))
            if row.fitness > best:
                best, bar = row.fitness, stage1[row.hash]
    seconds = time.perf_counter() - start
    full = {h: f for h, f, _ in replay}
    ranked = sorted(full, key=lambda h: -full[h])
    top = set(ranked[:max(1, math.ceil(0.1 * len(ranked)))])
    by_margin = {}
    for margin in sorted({*MARGINS, cascade.margin}):
        dropped = {h for h, _, bar in replay if bar is not None and stage1[h] < bar - margin}
        by_margin[str(margin)] = {"top10_dropped": len(top & dropped), "false_drop_rate": len(top & dropped) / len(top),
                                  "dropped_of_sample": len(dropped) / len(full)}
    finite = [h for h in full if math.isfinite(stage1[h]) and math.isfinite(full[h])]
    return {"sample": len(full), "top10": len(top), **by_margin[str(cascade.margin)], "by_margin": by_margin,
            "spearman_compressed": spearman([stage1[h] for h in finite], [full[h] for h in finite]),
            "stage1_seconds": seconds, "rows": [{"full": full[h], "stage1": stage1[h], "top10": h in top} for h in ranked]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=150.0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--margin", type=float, default=CASCADE.margin)
    p.add_argument("--out", default="cascade.json", help="file name under benchmarks/results/")
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
    drops = false_drops(off_stores, on)
    ratio = [on["assessed_per_hour"] / off["assessed_per_hour"] for off, on in zip(runs[::2], runs[1::2])]
    out = {"machine": machine(), "task": TASK, "lr_multipliers": LRS, "cascade": vars(on),
           "seconds_per_search": a.seconds, "runs": runs, "assessed_per_hour_ratio": ratio, "false_drops": drops}
    path = ROOT / "benchmarks" / "results" / a.out
    path.write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(f"{'seed':>4} {'cascade':>7} {'assessed/h':>10} {'per cpu-h':>9} {'full/h':>7} {'dropped':>7} {'best':>8}")
    for r in runs:
        print(f"{r['seed']:>4} {'on' if r['cascade'] else 'off':>7} {r['assessed_per_hour']:>10.0f} "
              f"{r['assessed_per_cpu_hour']:>9.0f} {r['full_per_hour']:>7.0f} {r['dropped']:>7} {r['best_fitness']:>+8.4f}")
    print(f"assessed per hour, on/off: {', '.join(f'{x:.2f}x' for x in ratio)}")
    print(f"false drops: {drops['top10_dropped']} of the top {drops['top10']} of {drops['sample']} programs "
          f"({drops['false_drop_rate']:.0%}), {drops['dropped_of_sample']:.0%} of the sample dropped; "
          f"Spearman(stage 1, full) {drops['spearman_compressed']:.2f}")
    for margin, m in drops["by_margin"].items():
        print(f"  margin {margin}: false drops {m['top10_dropped']}/{drops['top10']}, dropped {m['dropped_of_sample']:.0%}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
