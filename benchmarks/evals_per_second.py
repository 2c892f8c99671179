"""Evaluations per second of a search, with glibc's allocator defaults and with freed memory kept.

A search case runs `optsearch evolve CONFIG --max-evals N --executor inline` in a fresh process, a
training case one `optsearch eval PROGRAM --task T` (one seed, lr multipliers 0.3, 1 and 3, as the
searches on training tasks evaluate), once with `OPTSEARCH_KEEP_FREED_MEMORY=0` (glibc's defaults: large temporaries are returned to the OS
and faulted in again at every step) and once as shipped (`optsearch.evaluators.allocator`), `--reps`
rounds alternating the order. Reported per run: wall, user and system seconds and minor page faults
of the child (`os.wait4`), evaluations per second; per case the median ratio of the two.

    python benchmarks/evals_per_second.py [--reps 2] [--case imitate_lion ...]

Writes `benchmarks/results/evals_per_second.json`.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from machine_info import loadavg, machine  # noqa: E402

# case -> (config or program/task, evaluations)
CASES = {
    "imitate_lion": ("configs/imitate_lion.yaml", 200),
    "imitate_muon": ("configs/imitate_muon.yaml", 100),
    "lm_small": ("muon_adamw/lm", 1),
    "vit_small": ("muon_adamw/vit", 1),
    "mlp_small": ("adamw/mlp", 1),
}


def run_once(config: str, evaluations: int, keep: bool, threads: int) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix="evals_per_second."))
    env = dict(os.environ, OPTSEARCH_KEEP_FREED_MEMORY="1" if keep else "0", OMP_NUM_THREADS=str(threads))
    optsearch = str(Path(sys.executable).with_name("optsearch"))
    if config.endswith(".yaml"):
        cmd = [optsearch, "evolve", str(ROOT / config), "--run-dir", str(run_dir / "run"),
               "--max-evals", str(evaluations), "--executor", "inline", "--quiet"]
    else:
        program, task = config.split("/")
        cmd = [optsearch, "eval", program, "--task", task, "--seeds", "1", "--lr-multipliers", "0.3", "1", "3",
               "--threads", str(threads)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode()
    shutil.rmtree(run_dir, ignore_errors=True)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err}")
    return {"keep_freed_memory": keep, "wall_s": round(wall, 2), "user_s": round(usage.ru_utime, 2),
            "sys_s": round(usage.ru_stime, 2), "minor_faults": usage.ru_minflt,
            "evals_per_s": round(evaluations / wall, 3)}


def summary(config: str, evaluations: int, runs: list[dict]) -> dict:
    """Medians of each way and their ratios: by wall time, and by the child's CPU time (user +
    system), which a machine shared with other work disturbs less."""
    def med(keep: bool, f) -> float:
        return statistics.median(f(r) for r in runs if r["keep_freed_memory"] == keep)

    cpu = lambda r: r["user_s"] + r["sys_s"]  # noqa: E731
    return {"config": config, "evaluations": evaluations, "runs": runs,
            "speedup": round(med(True, lambda r: r["evals_per_s"]) / med(False, lambda r: r["evals_per_s"]), 3),
            "speedup_cpu": round(med(False, cpu) / med(True, cpu), 3),
            "sys_s_default": med(False, lambda r: r["sys_s"]), "sys_s_kept": med(True, lambda r: r["sys_s"]),
            "faults_default": med(False, lambda r: r["minor_faults"]),
            "faults_kept": med(True, lambda r: r["minor_faults"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", nargs="+", choices=list(CASES), default=list(CASES))
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/evals_per_second.json"))
    a = ap.parse_args()
    results = {"machine": machine(), "loadavg": loadavg(), "threads": a.threads, "cases": {}}
    for case in a.case:
        config, n = CASES[case]
        if config.endswith(".yaml") and not (ROOT / config).exists():
            print(f"{case}: {config} missing, skipped")
            continue
        runs = []
        for rep in range(a.reps):
            for keep in ((False, True) if rep % 2 == 0 else (True, False)):
                runs.append(run_once(config, n, keep, a.threads))
                r = runs[-1]
                print(f"{case:14s} keep={keep!s:5s} wall {r['wall_s']:7.2f} s  user {r['user_s']:7.2f}  "
                      f"sys {r['sys_s']:6.2f}  faults {r['minor_faults']:>9,}  {r['evals_per_s']:.2f} evals/s",
                      flush=True)
        results["cases"][case] = summary(config, n, runs)
        c = results["cases"][case]
        print(f"{case}: {c['speedup']:.2f}x evaluations/s ({c['speedup_cpu']:.2f}x per CPU second) with freed "
              "memory kept")
    Path(a.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
