"""Rediscovery: evaluations until evolution finds a known optimizer, beside random search.

Three cases, each a run config in configs/ (so `optsearch evolve` runs the same search):
- `lion`: from AdamW, imitate Lion (`imitate` task); found = Lion's canonical form with every
  constant within 1% (configs/imitate_lion.yaml); `lion_islands` the same search on 4 islands
  (configs/imitate_lion_islands.yaml; not run unless named).
- `rmsprop`: from SGD, imitate torch.optim.RMSprop (`imitate_rmsprop`); found = RMSprop's
  canonical form, alpha within 1%, eps within 1e-6 (configs/imitate_rmsprop.yaml).
- `muon`: from AdamW on the hidden matrix (AdamW fixed on the rest), imitate torch.optim.Muon there
  beside torch.optim.AdamW (`imitate_muon`); found = zoo muon_wd05's canonical form with every
  constant within 1% (configs/imitate_muon.yaml). Random search draws the hidden program alone.
For each seed, evolution (inline executor) and random search (same op set, same screening and
cache, same budget) run until found or out of budget. Reported: evaluations until found (median
over seeds; a run that did not find it counts as more than the budget), the best fitness, the
fraction of children rejected statically, the cache hit rate and evaluations per second. The JSON
is written after every run (evolution runs first), so a benchmark stopped early keeps what finished.

    .venv/bin/python benchmarks/rediscovery.py                 # 5 seeds, every case, 2 processes
    .venv/bin/python benchmarks/rediscovery.py --case lion --seeds 3 --jobs 1
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from optsearch.display import finite

ROOT = Path(__file__).resolve().parent.parent
CASES = {"lion": ROOT / "configs" / "imitate_lion.yaml", "rmsprop": ROOT / "configs" / "imitate_rmsprop.yaml",
         "muon": ROOT / "configs" / "imitate_muon.yaml",
         "lion_islands": ROOT / "configs" / "imitate_lion_islands.yaml"}


def _evolution(case: str, seed: int, budget: int, run_root: str) -> dict:
    import torch
    torch.set_num_threads(1)
    from optsearch.config import load_config
    from optsearch.run import evolve, with_overrides
    config = with_overrides(load_config(CASES[case]), max_evals=budget, executor="inline")
    config = replace(config, search=replace(config.search, seed=seed))
    run_dir = Path(run_root) / f"{case}_evolution_{seed}"
    start = time.monotonic()
    outcome, store = evolve(config, run_dir)
    c = outcome.counters
    best = store.program(outcome.best_id).text if outcome.best_id else None
    store.close()
    return {"case": case, "method": "evolution", "seed": seed, "found_at": c.found_at,
            "found_program": c.found_target, "evaluations": c.evaluations, "best_fitness": finite(c.best_fitness),
            "best_program": best, "children": c.children, "rejected": c.rejected, "cache_hits": c.cache_hits,
            "hash_hits": c.hash_hits, "fingerprint_hits": c.fingerprint_hits, "restarts": c.restarts,
            "seconds": time.monotonic() - start, "evaluations_per_second": c.evaluations / max(c.elapsed, 1e-9)}


def _random(case: str, seed: int, budget: int, run_root: str) -> dict:
    import torch
    torch.set_num_threads(1)
    from optsearch.config import load_config
    from optsearch.programs import resolve_program
    from optsearch.run import fixed_programs
    from optsearch.search.random_search import random_search
    config = load_config(CASES[case])
    settings = replace(config.search, seed=seed, evaluations=budget)
    r = random_search(settings, resolve_program(settings.target.program), fixed=fixed_programs(config))
    return {"case": case, "method": "random", "seed": seed, "found_at": r.found_at, "evaluations": r.evaluations,
            "best_fitness": finite(r.best_fitness), "best_program": r.best_program, "children": r.drawn,
            "rejected": r.rejected, "cache_hits": r.cache_hits, "seconds": r.seconds,
            "evaluations_per_second": r.evaluations / max(r.seconds, 1e-9)}


def _job(args: tuple) -> dict:
    method, case, seed, budget, run_root = args
    out = (_evolution if method == "evolution" else _random)(case, seed, budget, run_root)
    found = f"found at {out['found_at']}" if out["found_at"] else "not found"
    print(f"{case:8s} {method:9s} seed {seed}: {found}, best fitness {out['best_fitness']}, "
          f"{out['evaluations']} evaluations in {out['seconds']:.0f} s", flush=True)
    return out


def _summary(runs: list[dict], budget: int) -> dict:
    found = [r["found_at"] if r["found_at"] is not None else math.inf for r in runs]
    median = statistics.median(found)
    children = sum(r["children"] for r in runs)
    return {"runs": len(runs), "found": sum(math.isfinite(x) for x in found),
            "median_evaluations_to_find": median if math.isfinite(median) else f"> {budget}",
            "best_fitness_median": statistics.median([r["best_fitness"] or -math.inf for r in runs]),
            "rejected_fraction": sum(r["rejected"] for r in runs) / children if children else None,
            "cache_hit_rate": sum(r["cache_hits"] for r in runs) / children if children else None,
            "evaluations_per_second": statistics.median([r["evaluations_per_second"] for r in runs])}


def _result(args: argparse.Namespace, cases: list[str], methods: list[str], runs: list[dict], wall: float) -> dict:
    """The JSON of the runs finished so far (in case, method, seed order), with their summaries."""
    runs = sorted(runs, key=lambda r: (cases.index(r["case"]), methods.index(r["method"]), r["seed"]))
    summary = {f"{c}/{m}": _summary(mine, args.budget) for c in cases for m in methods
               if (mine := [r for r in runs if r["case"] == c and r["method"] == m])}
    return {"benchmark": "rediscovery", "budget": args.budget, "seeds": args.seeds, "jobs": args.jobs,
            "machine": f"{platform.machine()}, {mp.cpu_count()} cores", "wall_seconds": wall,
            "summary": summary, "runs": runs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", action="append", choices=list(CASES), help="repeatable (default: lion, rmsprop and muon)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--budget", type=int, default=2000, help="evaluations per run")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (one torch thread each)")
    p.add_argument("--no-random", action="store_true", help="skip the random-search baseline")
    p.add_argument("--runs-dir", help="keep the evolution runs here (default: a temporary directory)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rediscovery.json"))
    args = p.parse_args()
    if args.runs_dir and Path(args.runs_dir).is_dir() and any(Path(args.runs_dir).iterdir()):
        p.error(f"--runs-dir {args.runs_dir}: not empty (its runs would clash with this benchmark's); "
                "choose a new or empty folder")
    cases = args.case or ["lion", "rmsprop", "muon"]
    methods = ["evolution"] + ([] if args.no_random else ["random"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.runs_dir or tmp
        # evolution first: a benchmark stopped early keeps the runs that matter most
        jobs = [(m, c, s, args.budget, root) for m in methods for c in cases for s in range(args.seeds)]
        start, runs = time.monotonic(), []
        with mp.get_context("fork").Pool(args.jobs) as pool:
            for run in pool.imap_unordered(_job, jobs, chunksize=1):
                runs.append(run)  # written after every run, so a stopped benchmark keeps what finished
                result = _result(args, cases, methods, runs, time.monotonic() - start)
                Path(args.out).write_text(json.dumps(result, indent=2))
    for key, s in result["summary"].items():
        print(f"{key:20s} found {s['found']}/{s['runs']}, median evaluations {s['median_evaluations_to_find']}, "
              f"best fitness (median) {s['best_fitness_median']:.4f}, rejected {s['rejected_fraction']:.0%}, "
              f"cache hits {s['cache_hit_rate']:.0%}, {s['evaluations_per_second']:.1f} evaluations/s")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
