"""Muon on the hidden matrices and AdamW on the rest, through the engine's own evaluator: the
research note's table (torch.optim.Muon + AdamW in a hand-written loop) measured again with role
candidates trained by `optsearch.evaluators.train`.

The note's setup, per task: AdamW at the task's calibrated lr and weight decay on embeddings, the
head and vectors; Muon (Nesterov 0.95, 5 Newton-Schulz steps, (3.4445, -4.775, 2.0315)) on the
hidden matrices with the task's decay, at three lrs per scaling rule: `adjust_lr_fn=None`
("original") at lr 0.01 / 0.02 / 0.04, and `"match_rms_adamw"` at 0.5x / 1x / 2x AdamW's lr. Each
row is one role candidate, its Muon lr a constant of the Muon program (so AdamW stays at its
calibrated lr: the lr multiplier is 1), trained for seeds 0 and 1; plus AdamW alone (the zoo's
AdamW with the task's decay). Validation metric, lower is better.

Writes `benchmarks/results/muon_roles.json` and prints a table.

    python benchmarks/muon_roles.py [--tasks lm vit] [--seeds 0 1] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from optsearch.dsl import parse_candidate
from optsearch.evaluators.train import train
from optsearch.proxy_tasks import get_task
from machine_info import loadavg, machine  # benchmarks/ is on sys.path when a script here runs

RESULTS = Path(__file__).parent / "results" / "muon_roles.json"
GRID = {"original": (0.01, 0.02, 0.04), "match_rms_adamw": (0.5, 1.0, 2.0)}  # absolute lr / x AdamW's lr
# The note's figures (seed 0 per lr; best Muon seed 0 / 1; AdamW seed 0 / 1).
NOTE = {"lm": {"adamw": (2.212, 2.254), "original": (2.242, 2.031, 1.900), "match_rms_adamw": (2.403, 2.289, 2.056),
               "best": (1.900, 1.898)},
        "vit": {"adamw": (1.126, 1.124), "original": (1.125, 0.999, 0.951), "match_rms_adamw": (1.124, 0.995, 0.966),
                "best": (0.951, 0.951)}}

ADAMW = """def adamw(w, g, lr, step, m, v):
    m = interp(g, m, 0.9)
    g2 = square(g)
    v = interp(g2, v, 0.999)
    mhat = bias_correct(m, 0.9, step)
    vhat = bias_correct(v, 0.999, step)
    d = sqrt(vhat)
    d = d + 1e-08
    update = mhat / d
    decay = w * {wd!r}
    update = update + decay
    update = update * lr
    return update, m, v
"""
SCALES = {"original": ["ratio = r / c", "ratio = maximum(ratio, 1.0)", "scale = sqrt(ratio)"],
          "match_rms_adamw": ["big = maximum(r, c)", "scale = sqrt(big)", "scale = scale * 0.2"]}


def muon(rule: str, wd: float, factor: float) -> str:
    """torch.optim.Muon's step with `adjust_lr_fn` = `rule`, at `factor` times the shared lr."""
    body = ["u = interp(g, m, 0.9025)", "m = interp(g, m, 0.95)",
            "o = orthogonalize(u, 3.4445, -4.775, 2.0315, 5.0, 1e-07)",
            "r = rows(w)", "c = cols(w)", *SCALES[rule], "update = o * scale", f"decay = w * {wd!r}",
            "update = update + decay", "update = update * lr", f"update = update * {factor!r}", "return update, m"]
    return "def muon(w, g, lr, m):\n" + "".join(f"    {line}\n" for line in body)


def candidate(rule: str, wd: float, factor: float):
    return parse_candidate(muon(rule, wd, factor) + "\n\n" + ADAMW.format(wd=wd)
                           + '\n\nroles = {"hidden": muon, "default": adamw}\n')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["lm", "vit"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started, load_before = time.perf_counter(), loadavg()
    rows = []
    for name in args.tasks:
        task = get_task(name, "small")
        cal = task.calibration  # AdamW's tuned lr and decay; the evaluator's lr is budget.lr times a multiplier
        lr, wd = (cal.lr, cal.weight_decay) if cal else (task.budget.lr, task.budget.weight_decay)
        mult = lr / task.budget.lr
        runs = {"adamw": parse_candidate(ADAMW.format(wd=wd))}
        runs.update({f"original lr {x}": candidate("original", wd, x / lr) for x in GRID["original"]})
        runs.update({f"match_rms_adamw {x}x": candidate("match_rms_adamw", wd, x) for x in GRID["match_rms_adamw"]})
        for label, c in runs.items():
            t0 = time.perf_counter()
            r = train(c, task, tuple(args.seeds), (mult,))
            row = {"task": name, "run": label, "status": r.status, "metrics": [round(m, 4) for m in r.metrics],
                   "lr": lr, "weight_decay": wd, "seconds": round(time.perf_counter() - t0, 1)}
            rows.append(row)
            print(f"  {name} {label:<22} {row['metrics']} ({row['seconds']} s)", file=sys.stderr, flush=True)
    result = {"benchmark": "muon_roles", "torch": torch.__version__, "threads": torch.get_num_threads(),
              "machine": machine(), "seeds": args.seeds, "rows": rows, "note": NOTE,
              "seconds": round(time.perf_counter() - started, 1),
              "load_average_1min": {"before": load_before, "after": loadavg()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    report(rows, args.seeds)
    print(f"wrote {args.out}")
    return 0


def report(rows: list[dict], seeds: list[int]) -> None:
    print(f"validation metric, seeds {' / '.join(map(str, seeds))} (the research note's seed 0 in brackets)")
    for name in dict.fromkeys(r["task"] for r in rows):
        mine = {r["run"]: r["metrics"] for r in rows if r["task"] == name}
        note = NOTE.get(name, {})
        print(f"{name}/small")
        for run, metrics in mine.items():
            rule, _, x = run.partition(" ")
            ref = note.get("adamw", (None,))[0] if run == "adamw" else None
            if rule in GRID and rule in note:
                k = [str(v) for v in GRID[rule]].index(x.removeprefix("lr ").removesuffix("x"))
                ref = note[rule][k]
            print(f"  {run:<22} {' / '.join(f'{m:.3f}' for m in metrics)}" + (f"  [{ref:.3f}]" if ref else ""))


if __name__ == "__main__":
    sys.exit(main())
