"""Speed of the evaluator (`optsearch.evaluators.train`) against a plain PyTorch training loop.

Three questions, on the `lm` and `vit` proxy tasks (small by default), in one process:

(a) overhead: one evaluation of the zoo AdamW program through the evaluator with B = 1 copy (seed 0,
    lr multiplier 1.0) against `train_adamw`, a plain loop with `torch.optim.AdamW` on the same
    model, data and steps. Target <= 1.1x.
(b) batching: per-copy time of B = 8 copies trained together (2 seeds x 4 lr multipliers) against
    B = 1. Target <= 1.0x on CPU (batching never costs), <= 0.35x on a GPU (`--device cuda`).
(d) roles: one evaluation of the zoo role candidate `muon_adamw` (Muon on the hidden matrices, AdamW
    on the rest) through the evaluator with B = 1 against `train_muon_adamw`, a plain loop with
    `torch.optim.Muon` (`adjust_lr_fn="match_rms_adamw"`) on the hidden matrices and `torch.optim.AdamW`
    on the rest, same model, data, steps and lr. Target <= 1.1x. (torch.optim.Muon runs Newton-Schulz
    in bfloat16, the evaluator in float32.) `--case muon_adamw` runs only this one.
(c) efficiency: the evaluator's achieved FLOP/s (matmul FLOPs of one forward+backward step under
    vmap, counted by `torch.utils.flop_counter.FlopCounterMode`, times steps, plus the validation
    metric's FLOPs, over the wall time of the whole evaluation) as a fraction of a dense float32
    matmul's FLOP/s measured here on the same thread(s): a square one of the size of the model's
    largest matmul (cube root of its m*k*n) and a 1024^2 one. Aim >= 0.5.

Every evaluation is a whole `train()` / `train_adamw()` call timed from outside (compile, init,
all steps, the validation metric). One warm-up call of each kind runs first (its time, mostly
torch.func's one-time set-up, is reported as `first_call_s`), then `--reps` rounds, each timing
evaluator B=1, train_adamw and evaluator B=8 in a rotating order so slow drift of a shared machine
falls on all three; ratios are medians over rounds of the within-round ratio.

Writes `benchmarks/results/evaluator_speed.json` (one entry per device kind; a run on one device
keeps the other's entry) and prints a table.

    python benchmarks/evaluator_speed.py [--quick] [--device cpu|cuda] [--threads 1] [--reps 3]
                                         [--case all|adamw|muon_adamw]
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.func import grad_and_value, vmap
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from optsearch.discovered import load_zoo, load_zoo_candidate
from optsearch.dsl import compile_program
from optsearch.evaluators.train import train
from optsearch.proxy_tasks import Task, get_task
from optsearch.proxy_tasks.adamw import train_adamw
from machine_info import loadavg, machine  # benchmarks/ is on sys.path when a script here runs

RESULTS = Path(__file__).parent / "results" / "evaluator_speed.json"
TARGETS = {"overhead_ratio_max": 1.1, "roles_ratio_max": 1.1, "per_copy_ratio_max": {"cpu": 1.0, "cuda": 0.35},
           "matmul_fraction_min": 0.5}
BATCH_SEEDS, BATCH_MULTS = (0, 1), (0.5, 0.7, 1.0, 1.4)   # B = 8
QUICK_STEPS, QUICK_REPS = 24, 2


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def truncated(task: Task, steps: int) -> Task:
    """A copy of `task` whose budget has `steps` steps (warm-up shortened in proportion)."""
    b = task.budget
    if steps >= b.steps:
        return task
    short = copy.copy(task)
    short.budget = dataclasses.replace(b, steps=steps, warmup=min(b.warmup * steps // b.steps, steps - 1))
    return short


# ------------------------------------------------------------------------------------------ FLOPs

class _MatmulShapes(TorchDispatchMode):
    """Records (m, k, n) of every matrix product (per matrix of a batched one)."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, int, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in ("mm", "bmm", "addmm", "baddbmm"):
            a, b = (args[1], args[2]) if name.startswith(("add", "badd")) else (args[0], args[1])
            self.shapes.append((a.shape[-2], a.shape[-1], b.shape[-1]))
        return func(*args, **(kwargs or {}))


def stacked_inputs(task: Task, seeds: tuple[int, ...], copies: int):
    """B stacked parameter copies and batch, as the evaluator builds them (seed-major)."""
    per = copies // len(seeds)
    inits = [task.init(s) for s in seeds]
    params = {k: torch.stack([inits[i][k] for i in range(len(seeds)) for _ in range(per)]) for k in inits[0]}
    batches = [task.batch(s, 1) for s in seeds]
    batch = tuple(torch.stack([batches[i][j] for i in range(len(seeds)) for _ in range(per)])
                  for j in range(len(batches[0])))
    return params, batch


def count_flops(task: Task, seeds: tuple[int, ...], copies: int) -> dict:
    """FLOPs of one vmapped training step and of the vmapped validation metric, for B copies."""
    params, batch = stacked_inputs(task, seeds, copies)
    step_fn = vmap(grad_and_value(task.loss))
    with FlopCounterMode(display=False) as fc:
        step_fn(params, batch)
    step = fc.get_total_flops()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        vmap(task.metric)(params)
    metric = fc.get_total_flops()
    shapes = _MatmulShapes()
    with shapes:
        step_fn(params, batch)
    m, k, n = max(shapes.shapes, key=lambda s: s[0] * s[1] * s[2])
    return {"step_flops": step, "metric_flops": metric, "largest_matmul_mkn": [m, k, n]}


def matmul_flops_per_s(n: int, device: torch.device, seconds: float = 0.3, rounds: int = 3) -> float:
    """Median over `rounds` of a float32 n x n matmul's FLOP/s (each round runs >= `seconds`)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device)
    b = torch.randn(n, n, generator=g).to(device)
    out = torch.empty(n, n, device=device)
    for _ in range(3):
        torch.mm(a, b, out=out)
    sync(device)
    start = time.perf_counter()
    torch.mm(a, b, out=out)
    sync(device)
    iters = max(1, int(seconds / max(time.perf_counter() - start, 1e-6)))
    rates = []
    for _ in range(rounds):
        sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            torch.mm(a, b, out=out)
        sync(device)
        rates.append(2 * n ** 3 * iters / (time.perf_counter() - start))
    return statistics.median(rates)


# ------------------------------------------------------------------------------------------ timing

def timed(fn, device: torch.device) -> tuple[float, float, object]:
    """(wall seconds, process CPU seconds, result) of fn()."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def bench_task(name: str, size: str, steps: int | None, reps: int, b8_reps: int, device: torch.device,
               batching: str, log) -> dict:
    full = get_task(name, size).to(device)
    task = truncated(full, steps) if steps else full
    program = compile_program(load_zoo("adamw"))
    copies = len(BATCH_SEEDS) * len(BATCH_MULTS)
    kinds = {
        "evaluator_b1": lambda: train(program, task, (0,), (1.0,), device=device, batching=batching),
        "train_adamw": lambda: train_adamw(task, 0),
        "evaluator_b8": lambda: train(program, task, BATCH_SEEDS, BATCH_MULTS, device=device, batching=batching),
    }

    def check(kind: str, out) -> None:
        if kind.startswith("evaluator") and (out.status != "ok" or out.steps != task.budget.steps):
            raise RuntimeError(f"{name}: {kind} did not train the whole budget: {out.status} {out.error}")

    # Warm-up: one short call of each kind absorbs one-time costs (torch.func set-up, lazy imports).
    short = truncated(task, 3)
    first = {}
    for kind in kinds:
        fn = {"evaluator_b1": lambda: train(program, short, (0,), (1.0,), device=device, batching=batching),
              "train_adamw": lambda: train_adamw(short, 0),
              "evaluator_b8": lambda: train(program, short, BATCH_SEEDS, BATCH_MULTS, device=device,
                                            batching=batching)}[kind]
        first[kind] = round(timed(fn, device)[0], 4)

    wall: dict[str, list[float]] = {k: [] for k in kinds}
    cpu: dict[str, list[float]] = {k: [] for k in kinds}
    order = list(kinds)
    for rep in range(reps):
        for kind in order[rep % 3:] + order[:rep % 3]:
            if kind == "evaluator_b8" and rep >= b8_reps:
                continue
            w, c, out = timed(kinds[kind], device)
            check(kind, out)
            wall[kind].append(w)
            cpu[kind].append(c)
            log(f"  {name}/{size} round {rep + 1}/{reps}: {kind:<13} {w:7.2f} s")

    overhead = [e / a for e, a in zip(wall["evaluator_b1"], wall["train_adamw"])]
    per_copy = [b8 / copies / b1 for b8, b1 in zip(wall["evaluator_b8"], wall["evaluator_b1"])]  # same rounds
    med = {k: statistics.median(v) for k, v in wall.items()}

    flops_b1 = count_flops(task, (0,), 1)
    flops_b8 = count_flops(task, BATCH_SEEDS, copies)
    n_steps = task.budget.steps

    def achieved(f: dict, seconds: float) -> float:
        return (n_steps * f["step_flops"] + f["metric_flops"]) / seconds

    m, k, n = flops_b1["largest_matmul_mkn"]
    model_n = max(64, 64 * round((m * k * n) ** (1 / 3) / 64))
    return {
        "task": name, "size": size, "steps": n_steps, "full_budget_steps": full.budget.steps,
        "params": sum(v.numel() for v in task.init(0).values()),
        "batch_copies": {"seeds": list(BATCH_SEEDS), "lr_multipliers": list(BATCH_MULTS), "B": copies},
        "first_call_s": first,
        "wall_s": {k: [round(x, 4) for x in v] for k, v in wall.items()},
        "cpu_s": {k: [round(x, 4) for x in v] for k, v in cpu.items()},
        "median_wall_s": {k: round(v, 4) for k, v in med.items()},
        "a_overhead_ratio": round(statistics.median(overhead), 4),
        "a_overhead_ratio_cpu_time": round(statistics.median(
            [e / a for e, a in zip(cpu["evaluator_b1"], cpu["train_adamw"])]), 4),
        "b_per_copy_ratio": round(statistics.median(per_copy), 4),
        "b_per_copy_ratio_cpu_time": round(statistics.median(
            [b8 / copies / b1 for b8, b1 in zip(cpu["evaluator_b8"], cpu["evaluator_b1"])]), 4),
        "flops": {"step_b1": flops_b1["step_flops"], "metric_b1": flops_b1["metric_flops"],
                  "step_b8": flops_b8["step_flops"], "metric_b8": flops_b8["metric_flops"],
                  "largest_matmul_mkn": flops_b1["largest_matmul_mkn"]},
        "model_matmul_n": model_n,
        "achieved_flop_s": {"evaluator_b1": achieved(flops_b1, med["evaluator_b1"]),
                            "evaluator_b8": achieved(flops_b8, med["evaluator_b8"]),
                            "train_adamw": achieved(flops_b1, med["train_adamw"])},
    }


def train_muon_adamw(task: Task, seed: int = 0, weight_decay: float = 0.01) -> float:
    """A plain loop: `torch.optim.Muon` ("match_rms_adamw") on the task's hidden matrices and
    `torch.optim.AdamW` on its other parameters, one lr (the budget's, on its schedule) and one weight
    decay, as the zoo's `muon_adamw`; returns the validation metric."""
    budget = task.budget
    params = {k: v.clone().requires_grad_(True) for k, v in task.init(seed).items()}
    roles = dict(zip(params, task.param_roles()))
    muon = torch.optim.Muon([p for k, p in params.items() if roles[k] == "hidden"], lr=budget.lr,
                            weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw")
    adamw = torch.optim.AdamW([p for k, p in params.items() if roles[k] != "hidden"], lr=budget.lr,
                              weight_decay=weight_decay)
    for step in range(1, budget.steps + 1):
        for opt in (muon, adamw):
            opt.param_groups[0]["lr"] = budget.lr * budget.lr_at(step)
        loss = task.loss(params, task.batch(seed, step))
        muon.zero_grad(set_to_none=True)
        adamw.zero_grad(set_to_none=True)
        loss.backward()
        muon.step()
        adamw.step()
    with torch.no_grad():
        return float(task.metric(params))


def bench_roles(name: str, size: str, steps: int | None, reps: int, device: torch.device, batching: str,
                log) -> dict:
    """(d): the evaluator with `muon_adamw` against `train_muon_adamw`, B = 1, interleaved rounds."""
    full = get_task(name, size).to(device)
    task = truncated(full, steps) if steps else full
    candidate = load_zoo_candidate("muon_adamw")
    short = truncated(task, 3)

    def kinds(t: Task) -> dict:
        return {"evaluator_muon_adamw": lambda: train(candidate, t, (0,), (1.0,), device=device, batching=batching),
                "train_muon_adamw": lambda: train_muon_adamw(t, 0)}

    first = {kind: round(timed(fn, device)[0], 4) for kind, fn in kinds(short).items()}
    wall: dict[str, list[float]] = {k: [] for k in kinds(task)}
    cpu: dict[str, list[float]] = {k: [] for k in kinds(task)}
    metric: dict[str, float] = {}
    order = list(wall)
    for rep in range(reps):
        for kind in order[rep % 2:] + order[:rep % 2]:
            w, c, out = timed(kinds(task)[kind], device)
            if kind.startswith("evaluator"):
                if out.status != "ok" or out.steps != task.budget.steps:
                    raise RuntimeError(f"{name}: {kind} did not train the whole budget: {out.status} {out.error}")
                out = out.metrics[0]
            metric[kind] = out
            wall[kind].append(w)
            cpu[kind].append(c)
            log(f"  {name}/{size} round {rep + 1}/{reps}: {kind:<20} {w:7.2f} s")
    ratios = [e / p for e, p in zip(wall["evaluator_muon_adamw"], wall["train_muon_adamw"])]
    cpu_ratios = [e / p for e, p in zip(cpu["evaluator_muon_adamw"], cpu["train_muon_adamw"])]
    return {"task": name, "size": size, "steps": task.budget.steps, "first_call_s": first,
            "wall_s": {k: [round(x, 4) for x in v] for k, v in wall.items()},
            "median_wall_s": {k: round(statistics.median(v), 4) for k, v in wall.items()},
            "cpu_s": {k: [round(x, 4) for x in v] for k, v in cpu.items()},
            "ratio": round(statistics.median(ratios), 4), "ratio_cpu_time": round(statistics.median(cpu_ratios), 4),
            "ratio_range": [round(min(ratios), 4), round(max(ratios), 4)],
            "metric": {k: round(v, 5) for k, v in metric.items()},
            "met": statistics.median(ratios) <= TARGETS["roles_ratio_max"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--tasks", nargs="+", default=["lm", "vit"])
    parser.add_argument("--size", default="small")
    parser.add_argument("--reps", type=int, default=None, help=f"timed rounds (default 3, --quick {QUICK_REPS})")
    parser.add_argument("--b8-reps", type=int, default=None,
                        help="rounds that also time B=8 (the first ones; default 2, --quick 1)")
    parser.add_argument("--batching", default="auto", choices=["auto", "vmap", "loop"],
                        help="the evaluator's batching (train(batching=...)); results are kept per device and "
                             "batching")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"truncate every budget to this many steps (default: full; --quick {QUICK_STEPS})")
    parser.add_argument("--case", default="all", choices=["all", "adamw", "muon_adamw"],
                        help="adamw: (a)-(c); muon_adamw: (d), the role candidate against torch.optim.Muon + AdamW")
    parser.add_argument("--quick", action="store_true", help="smoke mode: short budgets, fewer rounds")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    kind = device.type
    reps = args.reps or (QUICK_REPS if args.quick else 3)
    b8_reps = min(reps, args.b8_reps or (1 if args.quick else 2))
    steps = args.steps or (QUICK_STEPS if args.quick else None)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    key = kind if args.batching == "auto" else f"{kind}, batching={args.batching}"
    previous = read_previous(args.out)
    if args.case in ("all", "adamw"):
        run = adamw_cases(args, device, reps, b8_reps, steps, log)
        runs = {k: v for k, v in previous.get("runs", {}).items() if k != key}
        runs[key] = run
        runs.setdefault("cuda", {"measured": False, "b_per_copy_ratio_max": TARGETS["per_copy_ratio_max"]["cuda"],
                                 "note": "not measured: no GPU on the machine that wrote this file; run "
                                         "`python benchmarks/evaluator_speed.py --device cuda`"})
        previous["runs"] = dict(sorted(runs.items()))
        report(run, kind)
    if args.case in ("all", "muon_adamw"):
        started, load_before = time.perf_counter(), loadavg()
        rows = [bench_roles(t, args.size, steps, reps, device, args.batching, log) for t in args.tasks]
        roles_run = {
            "torch": torch.__version__, "python": platform.python_version(), "device": str(device),
            "threads": torch.get_num_threads(), "machine": machine(), "batching": args.batching,
            "quick": args.quick, "reps": reps, "target_ratio_max": TARGETS["roles_ratio_max"],
            "statistic": "wall seconds of whole evaluations; ratios are medians over rounds of within-round ratios",
            "tasks": rows, "seconds": round(time.perf_counter() - started, 1),
            "load_average_1min": {"before": load_before, "after": loadavg()},
        }
        previous["roles_runs"] = dict(sorted({**previous.get("roles_runs", {}), key: roles_run}.items()))
        report_roles(roles_run)
    if not args.no_write:
        result = {"benchmark": "evaluator_speed", **{k: v for k, v in previous.items() if k != "benchmark"}}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


def read_previous(path: Path) -> dict:
    """The results file's sections (`runs`: (a)-(c), `roles_runs`: (d)), each keyed by device kind;
    a run replaces only its own entries."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return previous if isinstance(previous, dict) else {}


def adamw_cases(args, device: torch.device, reps: int, b8_reps: int, steps: int | None, log) -> dict:
    """(a)-(c) on every task: the zoo AdamW program through the evaluator against torch.optim.AdamW."""
    kind = device.type
    started, load_before = time.perf_counter(), loadavg()
    rows = [bench_task(t, args.size, steps, reps, b8_reps, device, args.batching, log) for t in args.tasks]
    sizes = sorted({r["model_matmul_n"] for r in rows} | {1024})
    matmul = {n: matmul_flops_per_s(n, device) for n in sizes}
    per_copy_max = TARGETS["per_copy_ratio_max"].get(kind)
    for r in rows:
        refs = {"model_sized": matmul[r["model_matmul_n"]], "n1024": matmul[1024]}
        r["matmul_fraction"] = {k: {ref: round(v / rate, 4) for ref, rate in refs.items()}
                                for k, v in r["achieved_flop_s"].items()}
        r["achieved_flop_s"] = {k: round(v) for k, v in r["achieved_flop_s"].items()}
        r["met"] = {"a_overhead": r["a_overhead_ratio"] <= TARGETS["overhead_ratio_max"],
                    "b_per_copy": None if per_copy_max is None else r["b_per_copy_ratio"] <= per_copy_max,
                    "c_matmul_fraction": r["matmul_fraction"]["evaluator_b1"]["model_sized"]
                    >= TARGETS["matmul_fraction_min"]}

    run = {
        "torch": torch.__version__, "python": platform.python_version(), "device": str(device),
        "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
        "machine": machine(), "batching": args.batching, "quick": args.quick, "reps": reps, "b8_reps": b8_reps,
        "dtype": "float32",
        "targets": {"a_overhead_ratio_max": TARGETS["overhead_ratio_max"], "b_per_copy_ratio_max": per_copy_max,
                    "c_matmul_fraction_min": TARGETS["matmul_fraction_min"]},
        "statistic": "wall seconds of whole evaluations; ratios are medians over rounds of within-round ratios",
        "matmul_flop_s": {str(n): round(v) for n, v in matmul.items()},
        "tasks": rows, "seconds": round(time.perf_counter() - started, 1),
        "load_average_1min": {"before": load_before, "after": loadavg()},   # other work on a shared machine
    }
    return run


def report_roles(run: dict) -> None:
    print(f"(d) evaluator with muon_adamw / plain loop with torch.optim.Muon + torch.optim.AdamW, "
          f"{run['threads']} thread(s), median of {run['reps']} rounds{' (quick)' if run['quick'] else ''}")
    print(f"{'task':<10} {'steps':>5} {'loop s':>8} {'eval s':>8} {'ratio':>7} {'range':>11} {'cpu ratio':>9} "
          f"{'loop metric':>11} {'eval metric':>11}")
    for r in run["tasks"]:
        m, q = r["median_wall_s"], r["metric"]
        print(f"{r['task'] + '/' + r['size']:<10} {r['steps']:>5} {m['train_muon_adamw']:>8.2f} "
              f"{m['evaluator_muon_adamw']:>8.2f} {r['ratio']:>7.3f} "
              f"{r['ratio_range'][0]:>5.2f}-{r['ratio_range'][1]:<5.2f} "
              f"{r['ratio_cpu_time']:>9.3f} {q['train_muon_adamw']:>11.4f} "
              f"{q['evaluator_muon_adamw']:>11.4f}")
    print(f"target: <= {run['target_ratio_max']}x"
          + "".join(f"; {r['task']}/{r['size']}: missed" for r in run["tasks"] if not r["met"]))


def report(run: dict, kind: str) -> None:
    t = run["targets"]
    print(f"evaluator speed on {run['device']} ({run['machine'].get('gpu') or run['machine']['processor']}), "
          f"{run['threads']} thread(s), torch {run['torch']}, python {run['python']}; "
          f"batching {run['batching']}; median of {run['reps']} rounds (B=8: {run['b8_reps']})"
          f"{' (quick)' if run['quick'] else ''}")
    print("matmul float32: " + ", ".join(f"{n}^2 {v / 1e9:.1f} GFLOP/s" for n, v in run["matmul_flop_s"].items()))
    head = (f"{'task':<10} {'steps':>5} {'adamw s':>8} {'eval B1 s':>9} {'(a) ratio':>9} {'eval B8 s':>9} "
            f"{'(b) /copy':>9} {'GFLOP/s B1':>10} {'(c) frac':>14} {'adamw frac':>14}")
    print(head)
    for r in run["tasks"]:
        m = r["median_wall_s"]
        fr, fa = r["matmul_fraction"]["evaluator_b1"], r["matmul_fraction"]["train_adamw"]
        print(f"{r['task'] + '/' + r['size']:<10} {r['steps']:>5} {m['train_adamw']:>8.2f} {m['evaluator_b1']:>9.2f} "
              f"{r['a_overhead_ratio']:>9.3f} {m['evaluator_b8']:>9.2f} {r['b_per_copy_ratio']:>9.3f} "
              f"{r['achieved_flop_s']['evaluator_b1'] / 1e9:>10.1f} "
              f"{fr['model_sized']:>6.2f} /{fr['n1024']:>6.2f} {fa['model_sized']:>6.2f} /{fa['n1024']:>6.2f}")
    b = t["b_per_copy_ratio_max"]
    print(f"targets: (a) <= {t['a_overhead_ratio_max']}x, (b) <= {b}x on {kind}"
          + ("" if kind == "cuda" else " (GPU target <= 0.35x: not measured here)")
          + f", (c) >= {t['c_matmul_fraction_min']} of a model-sized matmul (frac: model-sized / 1024^2)")
    for r in run["tasks"]:
        missed = [k for k, v in r["met"].items() if v is False]
        if missed:
            print(f"  {r['task']}/{r['size']}: missed {', '.join(missed)}")


if __name__ == "__main__":
    sys.exit(main())
