"""Low-rank subspace optimizers on the `lm` proxy: quality, optimizer-state memory and step time.

AdamW and Lion (zoo programs), each full-rank and inside the subspace transform (`dsl/subspace.py`)
at two ranks, with the projection updated `online` (Online Subspace Descent: one Adam step on P per
step) and by `svd` refresh (GaLore: an SVD every K steps). Every run trains the task's model for its
whole budget (seed 0; AdamW at the task's lr, Lion at 0.3x, its best multiplier on `lm` in
benchmarks/results/zoo_eval.json) with the task's schedule, and records:

- the final validation metric (cross-entropy, nats/char);
- optimizer-state bytes actually held (the step object's state tensors) and per parameter;
- the optimizer step's time (`step_flat`, median and mean over steps: the mean carries the SVD
  refreshes) and the whole training step's (forward, backward, optimizer), as ratios against the
  same program's full-rank run in this process;
- for `online`, the worst ||P P^T - I||_F over matrices, checked every 25 steps (and the last step).

Writes `benchmarks/results/subspace_lm.json` and prints a table.

    python benchmarks/subspace_lm.py [--size medium] [--ranks 16 32] [--update-every 200] [--lr-p 0.005]
    python benchmarks/subspace_lm.py --quick      # 30 steps of lm/small, writes nothing
    python benchmarks/subspace_lm.py --costs      # SVD refresh vs online update per matrix, n = 128..2048

`--costs` times, per n x n matrix at rank n / 8, one SVD refresh against one online update of P:
SVD every K steps is cheaper on average than the online update only when K exceeds their ratio.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from optsearch.discovered import zoo_path
from optsearch.dsl import ProgramOptimizer, compile_program, load_program
from optsearch.dsl.subspace import Subspace, SubspaceProgram, _pca_grad, _top_right_singular
from optsearch.proxy_tasks import get_task

RESULTS = Path(__file__).parent / "results" / "subspace_lm.json"
PROGRAMS = {"adamw": 1.0, "lion": 0.3}   # program -> lr multiplier
ORTHO_EVERY = 25


def run(name: str, mult: float, sub: Subspace | None, task, steps: int) -> dict:
    compiled = compile_program(load_program(zoo_path(name)))
    step_object = compiled if sub is None else SubspaceProgram(compiled, sub)
    init = task.init(0)
    names = list(init)
    params = [init[n].clone().requires_grad_() for n in names]
    opt = ProgramOptimizer(step_object, [p.detach() for p in params])
    opt_times, step_times, worst = [], [], 0.0
    k = len(compiled.state_names)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        t0 = time.perf_counter()
        loss = task.loss(dict(zip(names, params)), task.batch(0, step))
        grads = torch.autograd.grad(loss, params)
        t1 = time.perf_counter()
        opt.step([g.detach() for g in grads], task.budget.lr * mult * task.budget.lr_at(step))
        t2 = time.perf_counter()
        opt_times.append(t2 - t1)
        step_times.append(t2 - t0)
        if sub is not None and sub.projection == "online" and (step % ORTHO_EVERY == 0 or step == steps):
            plan = step_object._plan(opt.layout)
            for P in plan.proj.unflatten(opt.state[k]):
                gram = P @ P.mT
                worst = max(worst, float(torch.linalg.matrix_norm(gram - torch.eye(gram.shape[-1]))))
    seconds = time.perf_counter() - start
    with torch.no_grad():
        metric = float(task.metric(dict(zip(names, [p.detach() for p in params]))))
    numel = sum(p.numel() for p in params)
    state_bytes = sum(t.numel() * t.element_size() for t in opt.state)
    return {
        "program": name, "lr_multiplier": mult,
        "mode": "full" if sub is None else sub.projection,
        "rank": None if sub is None else sub.rank,
        "update_every": None if sub is None or sub.projection != "svd" else sub.update_every,
        "lr_p": None if sub is None or sub.projection != "online" else sub.lr_p,
        "metric": metric, "final_train_loss": float(loss.detach()),
        "state_bytes": state_bytes, "state_per_param": state_bytes / 4 / numel, "params": numel,
        "opt_step_ms_median": 1e3 * statistics.median(opt_times), "opt_step_ms_mean": 1e3 * statistics.fmean(opt_times),
        "opt_step_ms_max": 1e3 * max(opt_times), "train_step_ms_mean": 1e3 * statistics.fmean(step_times),
        "ortho_error_max": worst if sub is not None and sub.projection == "online" else None,
        "steps": steps, "seconds": seconds,
    }


def projection_costs(sizes=(128, 256, 512, 1024, 2048), reps: int = 5) -> list[dict]:
    """Per matrix (n x n, rank n / 8, float32): one SVD refresh against one online update of P
    (the online-PCA gradient and an Adam step), medians over `reps`. SVD every K steps costs less on
    average than the online update only when K > svd / online (`break_even_K`)."""
    out = []
    for n in sizes:
        r = n // 8
        g = torch.randn(n, n)
        P = torch.linalg.qr(torch.randn(n, r)).Q.mT.contiguous()
        m, v = torch.zeros_like(P), torch.zeros_like(P)

        def online():
            grad = _pca_grad(g, P)
            m.lerp_(grad, 0.1)
            v.lerp_(grad * grad, 0.001)
            return P - 0.005 * m / (torch.sqrt(v) + 1e-8)

        def svd():
            return _top_right_singular(g, r)

        times = {}
        for name, fn in (("online", online), ("svd", svd)):
            fn()
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            times[name] = statistics.median(ts)
        out.append({"n": n, "rank": r, "svd_ms": 1e3 * times["svd"], "online_ms": 1e3 * times["online"],
                    "break_even_K": times["svd"] / times["online"]})
        print(f"{n} x {n}, rank {r}: svd {1e3 * times['svd']:.2f} ms, online update {1e3 * times['online']:.2f} ms, "
              f"break-even K {times['svd'] / times['online']:.1f}", flush=True)
    return out


def table(rows: list[dict]) -> str:
    full = {r["program"]: r for r in rows if r["mode"] == "full"}
    head = ("program", "mode", "rank", "val loss", "state MB", "state/param", "opt step ms (med/mean)",
            "opt step / full (median)", "train step / full (mean)", "max |PP^T-I|")
    lines = [head]
    for r in rows:
        f = full.get(r["program"], r)
        lines.append((r["program"], r["mode"], str(r["rank"] or "-"), f"{r['metric']:.4f}",
                      f"{r['state_bytes'] / 1e6:.3f}", f"{r['state_per_param']:.3f}",
                      f"{r['opt_step_ms_median']:.2f} / {r['opt_step_ms_mean']:.2f}",
                      f"{r['opt_step_ms_median'] / f['opt_step_ms_median']:.1f}",
                      f"{r['train_step_ms_mean'] / f['train_step_ms_mean']:.2f}",
                      "-" if r["ortho_error_max"] is None else f"{r['ortho_error_max']:.3f}"))
    widths = [max(len(x[i]) for x in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(x, widths)) for x in lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="medium")
    ap.add_argument("--ranks", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--update-every", type=int, default=200)
    ap.add_argument("--lr-p", type=float, default=0.005)
    ap.add_argument("--quick", action="store_true", help="30 steps of lm/small; writes nothing")
    ap.add_argument("--costs", action="store_true", help="only the SVD-vs-online cost per matrix, merged into the JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.costs:
        costs = projection_costs()
        if RESULTS.exists():
            data = json.loads(RESULTS.read_text())
            data["projection_costs"] = costs
            RESULTS.write_text(json.dumps(data, indent=2) + "\n")
            print(f"wrote {RESULTS}")
        return
    size = "small" if args.quick else args.size
    task = get_task("lm", size)
    steps = 30 if args.quick else task.budget.steps
    ranks = [8] if args.quick else args.ranks
    rows = []
    for name, mult in PROGRAMS.items():
        subs = [None] + [Subspace(r, "online", lr_p=args.lr_p) for r in ranks] \
            + [Subspace(r, "svd", update_every=args.update_every) for r in ranks]
        for sub in subs:
            rows.append(run(name, mult, sub, task, steps))
            print(f"{name} {rows[-1]['mode']} rank {rows[-1]['rank']}: {rows[-1]['metric']:.4f} "
                  f"({rows[-1]['seconds']:.0f}s)", flush=True)
    print(table(rows))
    if args.quick:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "subspace_lm", "task": "lm", "size": size, "steps": steps, "seed": 0,
        "torch": torch.__version__, "python": platform.python_version(), "threads": 1,
        "machine": platform.processor() or platform.machine(), "rows": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
