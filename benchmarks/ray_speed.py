"""Throughput of the Ray executor against the inline one, on the same fixed list of jobs.

Jobs: `--jobs` (24) programs that look like a search's children: the zoo programs cycled, each
with its own function name so no worker's compile cache can recognise a repeat; every job trains
on all `--task`s (default `mlp/small` and `quadratic/small`) with seed 0 and the default lr
multipliers, as a search's evaluation does. The same list runs through:

- `inline`: `InlineExecutor`, in this process (one torch thread);
- `ray1`, `ray2`: `RayExecutor` with 1 and 2 workers (one torch thread each) on one local Ray
  instance started here.

Two ratios: `scaling = evals/s of ray2 / evals/s of ray1` (target >= 1.7 on 2 cores) and
`overhead = seconds of ray1 / seconds of inline` (target <= 1.15). Start-up and warm-up (Ray's
start, each actor's imports, one job per worker, one job inline) are excluded and reported
apart. With `--reps N` the three run N rounds in rotating order (slow drift of a shared machine
falls on all three); ratios are medians over rounds of the within-round ratio. Every executor's
results are checked to match the inline ones (evaluation is deterministic).

Writes `benchmarks/results/ray_speed.json` and prints a table. On a shared machine, look at
`load_average_1min` and `machine_parallelism` (how much more work two plain torch processes
do than one, measured before and after: the ceiling for `scaling` while others use the cores).

    python benchmarks/ray_speed.py [--jobs 24] [--task mlp/small --task quadratic/small] [--reps 1] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from optsearch.discovered import zoo_names, zoo_path
from optsearch.evaluators import DEFAULT_LR_MULTIPLIERS, EvalJob, InlineExecutor
from optsearch.evaluators.ray_executor import RayExecutor
from machine_info import loadavg, machine  # benchmarks/ is on sys.path when a script here runs

RESULTS = Path(__file__).parent / "results" / "ray_speed.json"
TARGETS = {"scaling_min": 1.7, "overhead_max": 1.15}
DEFAULT_TASKS = ("mlp/small", "quadratic/small")


def make_jobs(n: int, tasks: tuple[str, ...], offset: int = 0) -> list[EvalJob]:
    """`n` jobs over the zoo programs cycled, each renamed (`adamw_7`) so its text is new."""
    names = sorted(zoo_names())
    jobs = []
    for i in range(offset, offset + n):
        name = names[i % len(names)]
        text = zoo_path(name).read_text().replace(f"def {name}(", f"def {name}_{i}(", 1)
        jobs.append(EvalJob(text, tasks=tasks, seeds=(0,), lr_multipliers=DEFAULT_LR_MULTIPLIERS))
    return jobs


def _spin(n: int) -> None:
    torch.set_num_threads(1)
    a = torch.randn(128, 128)
    for _ in range(n):
        a = torch.tanh(a @ a)


def machine_parallelism(work: int = 3000) -> float:
    """How many times more work 2 processes get done than 1 right now (2.0 on two idle cores):
    the ceiling for `scaling` while other work shares the machine."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    seconds = []
    for procs in (1, 2):
        ps = [ctx.Process(target=_spin, args=(work,)) for _ in range(procs)]
        t = time.perf_counter()
        for p in ps:
            p.start()
        for p in ps:
            p.join()
        seconds.append(time.perf_counter() - t)
    return 2 * seconds[0] / seconds[1]


def run_all(executor, jobs: list[EvalJob]) -> tuple[float, dict[int, float]]:
    """(wall seconds, fitness by job index) for every job submitted at once and drained."""
    start = time.perf_counter()
    ids = {executor.submit(j): k for k, j in enumerate(jobs)}
    fitness = {}
    while executor.pending():
        r = executor.next_result(timeout=600)
        if r is None:
            raise RuntimeError(f"no result in 600 s ({executor.pending()} pending)")
        fitness[ids[r.job_id]] = r.result.fitness
    return time.perf_counter() - start, fitness


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=None, help="jobs per timed run (default 24; --quick 6)")
    parser.add_argument("--task", action="append", default=None,
                        help="a task every job trains on, NAME/SIZE; repeat for several "
                             f"(default {' and '.join(DEFAULT_TASKS)}; --quick quadratic/small)")
    parser.add_argument("--reps", type=int, default=1, help="rounds of (inline, ray1, ray2), rotating order")
    parser.add_argument("--quick", action="store_true", help="smoke mode: few cheap jobs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    tasks = tuple(args.task or (("quadratic/small",) if args.quick else DEFAULT_TASKS))
    n_jobs = args.jobs or (6 if args.quick else 24)
    torch.set_num_threads(1)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read at import: keep Ray on loopback
    import ray

    started, load_before = time.perf_counter(), loadavg()
    parallelism = [machine_parallelism()]
    t = time.perf_counter()
    ray.init(num_cpus=3, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             logging_level="WARNING")  # room for both pools at once (1 + 2 workers, 1 thread each)
    ray_start = time.perf_counter() - t
    jobs = make_jobs(n_jobs, tasks)
    warm = make_jobs(2, tasks, offset=n_jobs)   # programs the timed runs never see
    executors, warmup_s = {}, {}
    try:
        t = time.perf_counter()
        executors["inline"] = InlineExecutor()
        run_all(executors["inline"], warm[:1])
        warmup_s["inline"] = time.perf_counter() - t
        for workers in (1, 2):
            t = time.perf_counter()
            ex = executors[f"ray{workers}"] = RayExecutor(workers=workers)
            if ex.wait_ready(timeout=120) != workers:
                raise RuntimeError(f"only {ex.wait_ready(0)} of {workers} Ray workers started")
            run_all(ex, warm[:workers])  # all workers idle: one warm-up job each
            warmup_s[f"ray{workers}"] = time.perf_counter() - t
        log(f"warm: ray.init {ray_start:.1f}s, " + ", ".join(f"{k} {v:.1f}s" for k, v in warmup_s.items()))
        rounds, mismatches = [], 0
        for rep in range(args.reps):
            order = ["inline", "ray1", "ray2"]
            order = order[rep % 3:] + order[:rep % 3]
            seconds, fitness = {}, {}
            for kind in order:
                seconds[kind], fitness[kind] = run_all(executors[kind], jobs)
                log(f"round {rep + 1}: {kind} {seconds[kind]:.1f}s ({n_jobs / seconds[kind]:.2f} evals/s)")
            mismatches += sum(fitness[k] != fitness["inline"] for k in ("ray1", "ray2"))
            rounds.append(seconds)
    finally:
        for ex in executors.values():
            ex.close()
        ray.shutdown()
    parallelism.append(machine_parallelism())
    scaling = statistics.median(r["ray1"] / r["ray2"] for r in rounds)
    overhead = statistics.median(r["ray1"] / r["inline"] for r in rounds)
    median_s = {k: round(statistics.median(r[k] for r in rounds), 2) for k in ("inline", "ray1", "ray2")}
    run = {
        "torch": torch.__version__, "ray": ray.__version__, "python": platform.python_version(),
        "machine": machine(), "threads_per_worker": 1, "quick": args.quick, "reps": args.reps,
        "jobs": n_jobs, "tasks": list(tasks), "seeds": [0], "lr_multipliers": list(DEFAULT_LR_MULTIPLIERS),
        "statistic": "wall seconds to submit and drain every job, warm-up excluded; ratios are medians over "
                     "rounds of within-round ratios",
        "median_wall_s": median_s,
        "evals_per_s": {k: round(n_jobs / v, 3) for k, v in median_s.items()},
        "scaling_ray2_over_ray1": round(scaling, 3), "overhead_ray1_over_inline": round(overhead, 3),
        "targets": {"scaling_min": TARGETS["scaling_min"], "overhead_max": TARGETS["overhead_max"]},
        "met": {"scaling": scaling >= TARGETS["scaling_min"], "overhead": overhead <= TARGETS["overhead_max"]},
        "results_match_inline": mismatches == 0,
        "startup_s": {"ray_init": round(ray_start, 2), **{k: round(v, 2) for k, v in warmup_s.items()}},
        "rounds": [{k: round(v, 2) for k, v in r.items()} for r in rounds],
        "seconds": round(time.perf_counter() - started, 1),
        "load_average_1min": {"before": load_before, "after": loadavg()},  # other work on a shared machine
        # 2 processes' throughput over 1's, before and after: the ceiling for `scaling` at the time
        "machine_parallelism": {"before": round(parallelism[0], 2), "after": round(parallelism[1], 2)},
    }
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"benchmark": "ray_speed", "run": run}, indent=2) + "\n")
    report(run)
    if not args.no_write:
        print(f"wrote {args.out}")
    return 0


def report(run: dict) -> None:
    print(f"Ray executor speed: {run['jobs']} jobs on {', '.join(run['tasks'])}, "
          f"{len(run['lr_multipliers'])} lr multipliers, 1 torch thread per worker; "
          f"{run['machine']['cpu_count']} CPUs ({run['machine']['processor']}), ray {run['ray']}, "
          f"torch {run['torch']}; median of {run['reps']} round(s){' (quick)' if run['quick'] else ''}")
    print(f"{'executor':<8} {'seconds':>8} {'evals/s':>8}")
    for k, s in run["median_wall_s"].items():
        print(f"{k:<8} {s:>8.2f} {run['evals_per_s'][k]:>8.3f}")
    t, met = run["targets"], run["met"]
    print(f"scaling ray2/ray1 {run['scaling_ray2_over_ray1']:.3f}x (target >= {t['scaling_min']}: "
          f"{'met' if met['scaling'] else 'MISSED'}); overhead ray1/inline {run['overhead_ray1_over_inline']:.3f}x "
          f"(target <= {t['overhead_max']}: {'met' if met['overhead'] else 'MISSED'}); "
          f"results match inline: {run['results_match_inline']}")
    print(f"machine: load average {run['load_average_1min']}; 2 processes do "
          f"{run['machine_parallelism']['before']:.2f}x / {run['machine_parallelism']['after']:.2f}x the work of "
          "1 (before / after; 2.0 on two idle cores): the ceiling for scaling on this machine at the time")


if __name__ == "__main__":
    sys.exit(main())
