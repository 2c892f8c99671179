"""AdamW on every proxy task at one size: wall time (one torch thread by default) and scores.

    python -m optsearch.proxy_tasks [--size small] [--tasks lm vit] [--seeds 0 1 2]
                                    [--lrs 1e-3 3e-3] [--wds 0.05 0.5] [--threads 1]
"""
from __future__ import annotations

import argparse
import time

import torch

from optsearch.proxy_tasks.adamw import train_adamw
from optsearch.proxy_tasks.registry import TASKS, get_task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=["small", "medium", "large"])
    parser.add_argument("--tasks", nargs="*", default=list(TASKS))
    parser.add_argument("--seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--lrs", type=float, nargs="*", default=None, help="lr grid (default: the budget's)")
    parser.add_argument("--wds", type=float, nargs="*", default=None, help="weight-decay grid")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{'task':<14}{'size':<8}{'lr':>9}{'wd':>7}{'seed':>5}{'first loss':>11}"
          f"{'last loss':>10}{'metric':>9}{'seconds':>9}{'cpu s':>8}")
    for name in args.tasks:
        t0 = time.perf_counter()
        task = get_task(name, args.size)
        setup = time.perf_counter() - t0
        for lr in args.lrs or [task.budget.lr]:
            for wd in args.wds if args.wds is not None else [task.budget.weight_decay]:
                for seed in args.seeds:
                    run = train_adamw(task, seed, lr=lr, weight_decay=wd)
                    last = sum(run.losses[-10:]) / len(run.losses[-10:])
                    print(f"{name:<14}{args.size:<8}{lr:>9.2g}{wd:>7.3g}{seed:>5}{run.losses[0]:>11.4f}"
                          f"{last:>10.4f}{run.metric:>9.4f}{run.seconds:>9.2f}{run.cpu_seconds:>8.2f}", flush=True)
        print(f"  ({name}/{args.size}: data set-up {setup:.2f}s; {task.budget.description})")


if __name__ == "__main__":
    main()
