"""How the Lion-vs-AdamW gap moves with batch size, horizon and data size on the ViT proxies.

Each setting is a variant of a small proxy task (`vit_smalldata`, `vit`, optionally
`lm_smalldata`) with its budget or training set changed. On each, AdamW, Lion (betas 0.9/0.99)
and signum (momentum 0.9) are tuned over a grid of lr multipliers x weight decays, 2 seeds; an
optimizer's score is the best (lr, wd) cell's validation metric averaged over the seeds (lower
is better), and the gaps are Lion - AdamW and signum - AdamW (negative: the sign method wins).

Grids (the same lr multipliers for every optimizer would have been simpler, but the sign
methods' best lr is not a fixed fraction of AdamW's here): AdamW lr x {0.3, 1, 3} and three
weight decays; Lion and signum three lr multipliers and two weight decays, chosen per data size
from one-seed pilots so that the optimum is inside the grid. On 1,280 images Lion's best lr was
AdamW's own (5e-3) with wd ~1.5, not the 3-10x lower lr and higher decay the Lion paper
advises; on 10,000 images it was ~3x lower (3e-3 against 1e-2) with wd ~0.1. Every program
decays as `update = (direction + w * wd) * lr`. A best cell on the edge of its grid is flagged.

Axes, from the base setting (`vit_smalldata` small: 1,280 images, 300 steps x batch 128,
30 epochs): batch 64 / 512 at the same number of examples seen (600 / 75 steps), a 3x shorter
horizon (100 steps, 10 epochs) and many images (`vit` small: 10,000, 300 steps, ~4 epochs).
Warmup is 10% of the steps, then cosine, as in the tasks' own budgets. The early stop that
compares a run with calibrated AdamW is switched off (it belongs to the unmodified budget).

Writes `benchmarks/results/lion_regimes.json` after every training (partial results survive;
settings already there from another run are kept), and prints a markdown table.

    python benchmarks/lion_regimes.py                      # the default grid, ~25 min on one core
    python benchmarks/lion_regimes.py --settings h900 lm   # extra settings, merged into the JSON
    python benchmarks/lion_regimes.py --quick              # smoke test: 1/10 steps, 1 seed, one cell
    python benchmarks/lion_regimes.py --table              # reprint the table from the JSON
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from optsearch.display import finite
from optsearch.dsl import Program, parse_program
from optsearch.evaluators.calibrate import adamw_program
from optsearch.evaluators.train import train
from optsearch.proxy_tasks import Task, get_task

RESULTS = Path(__file__).parent / "results" / "lion_regimes.json"
OPTIMIZERS = ("adamw", "lion", "signum")
ADAMW_LRS = (0.3, 1.0, 3.0)

LION = """
def lion(w, g, lr, m):
    c = interp(g, m, 0.9)
    update = sign(c)
    m = interp(g, m, 0.99)
    decay = w * {wd!r}
    update = update + decay
    update = update * lr
    return update, m
"""
SIGNUM = """
def signum(w, g, lr, m):
    m = interp(g, m, 0.9)
    update = sign(m)
    decay = w * {wd!r}
    update = update + decay
    update = update * lr
    return update, m
"""


@dataclass(frozen=True)
class Setting:
    """One task variant: which task, its budget, and the weight decays each optimizer tries."""

    name: str
    axis: str                        # what it varies from the base setting
    task: str
    steps: int
    batch_size: int
    adamw_wds: tuple[float, ...]
    sign_lrs: tuple[float, ...]      # lr multipliers of Lion and signum
    sign_wds: tuple[float, ...]
    default: bool = True             # in the default run (else only with --settings)


# (AdamW wds, sign lr multipliers, sign wds) by training-set size
FEW = dict(adamw_wds=(0.5, 2.0, 5.0), sign_lrs=(0.3, 1.0, 3.0), sign_wds=(0.5, 2.0))      # 1,280 images
MANY = dict(adamw_wds=(0.01, 0.05, 0.2), sign_lrs=(0.1, 0.3, 1.0), sign_wds=(0.05, 0.2))  # 10,000 images
LM = dict(adamw_wds=(0.01, 0.1, 1.0), sign_lrs=(0.1, 0.3, 1.0), sign_wds=(0.1, 1.0))
SETTINGS = [
    Setting("base", "base", "vit_smalldata", 300, 128, **FEW),
    Setting("h100", "horizon /3", "vit_smalldata", 100, 128, **FEW),
    Setting("bs64", "batch 64", "vit_smalldata", 600, 64, **FEW),
    Setting("bs512", "batch 512", "vit_smalldata", 75, 512, **FEW),
    Setting("data10k", "10k images", "vit", 300, 128, **MANY),
    Setting("data10k_h100", "10k images, horizon /3", "vit", 100, 128, **MANY),
    # Not in the default run (cost): a 3x longer horizon, and the char-LM on 16k characters.
    Setting("h900", "horizon x3", "vit_smalldata", 900, 128, **FEW, default=False),
    Setting("lm", "char-LM, 16k chars", "lm_smalldata", 400, 32, **LM, default=False),
    Setting("lm_bs128", "char-LM, batch 128", "lm_smalldata", 100, 128, **LM, default=False),
    # Larger batches at the same number of steps (4x the examples): the direction in which the Lion
    # paper reports Lion's gain growing (best batch 4,096 for Lion, 256 for AdamW).
    Setting("data10k_bs512", "10k images, batch 512", "vit", 300, 512, **MANY, default=False),
]


def build_task(setting: Setting) -> Task:
    """The small task with the setting's budget (warmup 10% of steps) and no early stop."""
    base = get_task(setting.task, "small")
    task = copy.copy(base)
    task.budget = replace(base.budget, steps=setting.steps, batch_size=setting.batch_size,
                          warmup=max(1, round(0.1 * setting.steps)))
    task.calibration = None   # its training curve belongs to the unmodified budget
    task.reference = None
    return task


def program_for(optimizer: str, wd: float) -> Program:
    if optimizer == "adamw":
        return adamw_program(wd)
    return parse_program((LION if optimizer == "lion" else SIGNUM).format(wd=float(wd)))


def examples(task: Task) -> int:
    """Training-set size: images for the ViTs, characters for the LM."""
    return int(task.cfg.train) if hasattr(task.cfg, "train") else len(task.train_ids)


def epochs(task: Task) -> float:
    per_step = task.budget.batch_size * (task.cfg.context if hasattr(task.cfg, "context") else 1)
    return task.budget.steps * per_step / examples(task)


def best_cell(cells: list[dict]) -> dict:
    """The (lr, wd) cell with the lowest seed-mean metric; a cell with a diverged seed is inf."""
    return min(cells, key=lambda c: c["mean"] if c["mean"] is not None else math.inf)


def summarize(entry: dict) -> None:
    """Fill in each optimizer's best cell, whether it sits on the edge of a grid of 3+ values, and the gaps."""
    for opt in OPTIMIZERS:
        cells = entry["cells"].get(opt, [])
        if not cells or len(cells) < entry["cells_expected"][opt]:
            continue
        best = best_cell(cells)
        lrs = sorted({c["lr_multiplier"] for c in cells})
        wds = sorted({c["weight_decay"] for c in cells})
        edge = [name for name, value, grid in (("lr", best["lr_multiplier"], lrs), ("wd", best["weight_decay"], wds))
                if len(grid) > 2 and value in (grid[0], grid[-1])]
        entry["best"][opt] = {**best, "edge": edge}
    b = entry["best"]
    for opt in ("lion", "signum"):
        if opt in b and "adamw" in b and b[opt]["mean"] is not None and b["adamw"]["mean"] is not None:
            seeds = [x - y for x, y in zip(b[opt]["per_seed"], b["adamw"]["per_seed"])]
            entry["gap"][opt] = {"mean": b[opt]["mean"] - b["adamw"]["mean"], "per_seed": seeds}


def run_setting(setting: Setting, seeds: tuple[int, ...], quick: bool, save) -> dict:
    task = build_task(setting)
    if quick:
        task.budget = replace(task.budget, steps=max(10, task.budget.steps // 10),
                              warmup=max(1, task.budget.warmup // 10))
    grids = {opt: ((ADAMW_LRS if opt == "adamw" else setting.sign_lrs),
                   (setting.adamw_wds if opt == "adamw" else setting.sign_wds)) for opt in OPTIMIZERS}
    if quick:
        grids = {opt: (lrs[1:2], wds[:1]) for opt, (lrs, wds) in grids.items()}
    entry = {"setting": asdict(setting), "task": task.name, "description": task.description,
             "budget": asdict(task.budget), "examples": examples(task), "epochs": epochs(task),
             "seeds": list(seeds), "cells_expected": {o: len(l) * len(w) for o, (l, w) in grids.items()},
             "cells": {}, "best": {}, "gap": {}, "seconds": 0.0}
    for opt, (lrs, wds) in grids.items():
        for wd in wds:
            r = train(program_for(opt, wd), task, seeds, lrs)
            entry["seconds"] += r.seconds
            for k, mult in enumerate(lrs):
                per_seed = [r.metric(s, k) for s in range(len(seeds))]
                losses = [r.train_losses[s * len(lrs) + k] for s in range(len(seeds))]
                mean = sum(per_seed) / len(per_seed)
                entry["cells"].setdefault(opt, []).append({
                    "lr_multiplier": mult, "lr": task.budget.lr * mult, "weight_decay": wd,
                    "mean": finite(mean), "per_seed": [finite(x) for x in per_seed],
                    "final_train_loss": finite(sum(losses) / len(losses))})
            cells = " ".join(f"x{m:g}:{r.metric(0, k):.3f}" for k, m in enumerate(lrs))
            print(f"  {setting.name:<13} {opt:<7} wd {wd:<5g} {r.status:<8} seed0 {cells}  {r.seconds:6.1f}s",
                  flush=True)
            summarize(entry)
            save(setting.name, entry)
    return entry


def fmt(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def table(results: dict) -> str:
    """Markdown table of the settings, in SETTINGS order."""
    lines = ["| setting | task, data | steps x batch | epochs | AdamW | Lion | signum | Lion - AdamW | "
             "signum - AdamW |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in SETTINGS:
        e = results.get(s.name)
        if e is None:
            continue
        best, gap = e["best"], e["gap"]

        def cell(opt: str) -> str:
            if opt not in best:
                return "-"
            b = best[opt]
            mark = "*" if b["edge"] else ""
            return f"{fmt(b['mean'])} (x{b['lr_multiplier']:g}, wd {b['weight_decay']:g}{mark})"

        def gap_cell(opt: str) -> str:
            if opt not in gap:
                return "-"
            seeds = " / ".join(fmt(x, True) for x in gap[opt]["per_seed"])
            return f"**{fmt(gap[opt]['mean'], True)}** ({seeds})"

        unit = "chars" if e["task"].startswith("lm") else "images"
        lines.append(f"| {s.name} ({s.axis}) | {e['task']}, {e['examples']:,} {unit} | "
                     f"{e['budget']['steps']} x {e['budget']['batch_size']} | {e['epochs']:.1f} | "
                     f"{cell('adamw')} | {cell('lion')} | {cell('signum')} | {gap_cell('lion')} | "
                     f"{gap_cell('signum')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", nargs="+", choices=[s.name for s in SETTINGS],
                    help="which settings (default: the default grid)")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="1/10 of the steps, 1 seed, one cell per optimizer")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON to write (default benchmarks/results/lion_regimes.json; --quick writes nothing "
                         "unless given)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--table", action="store_true", help="only print the table of the JSON's results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    chosen = [s for s in SETTINGS if (s.name in args.settings if args.settings else s.default)]
    seeds = tuple(range(1 if args.quick else args.seeds))
    out = args.out if args.out is not None else (None if args.quick else RESULTS)

    doc = {"settings": {}}
    if out is not None and out.exists():
        doc = json.loads(out.read_text())
    doc.update({"benchmark": "lion_regimes", "torch": torch.__version__, "python": platform.python_version(),
                "threads": args.threads, "date": time.strftime("%Y-%m-%d"),
                "grids": {"adamw_lr_multipliers": ADAMW_LRS, "per_setting": "setting.adamw_wds, sign_lrs, sign_wds",
                          "lion_betas": [0.9, 0.99], "signum_momentum": 0.9,
                          "score": "best (lr, wd) cell by seed-mean validation metric; lower is better"}})

    if args.table:
        for entry in doc["settings"].values():
            summarize(entry)
        print(table(doc["settings"]))
        return

    def save(name: str, entry: dict) -> None:
        doc["settings"][name] = entry
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(doc, indent=1) + "\n")

    start = time.perf_counter()
    for i, s in enumerate(chosen, 1):
        print(f"[{i}/{len(chosen)}] {s.name}: {s.axis}, {s.task} {s.steps} x {s.batch_size} "
              f"({time.perf_counter() - start:.0f}s so far)", flush=True)
        run_setting(s, seeds, args.quick, save)
    print(f"\ntotal {time.perf_counter() - start:.0f}s; * = best cell on the edge of its (3-value) lr or wd grid\n")
    print(table(doc["settings"]))


if __name__ == "__main__":
    main()
