"""Step time of the interpreter running the zoo `muon` program against `torch.optim.Muon`.

On the parameters of a proxy task (`lm`, small, by default): its hidden matrices (the 2-D weights of
the transformer blocks, where Muon is used; torch.optim.Muon takes 2-D parameters only), with fixed
random gradients, so only the optimizer step is timed. Both run in this process, alternating step by
step so that both see the same machine state; after a warmup the median of `--steps` steps is kept.

- `B=1`: `ProgramOptimizer(muon)` on one copy of the parameters against `torch.optim.Muon`.
- `B=8 per copy`: the interpreter stepping 8 copies at once (a batch axis, as the evaluator trains
  seeds x learning rates), its step time divided by 8, against the same `torch.optim.Muon` step.

torch runs Newton-Schulz in bfloat16, the interpreter in the parameters' dtype (float32 here); so a
third reference, `plain_f32`, is torch.optim.Muon's per-tensor loop written out in float32.
- `export`: the zoo `muon` exported (`optsearch export muon`), its foreach path (one batched
  Newton-Schulz per matrix shape) and its per-tensor path, against the same references.
Writes `benchmarks/results/matrix_step_time.json` and prints a table.

    python benchmarks/matrix_step_time.py [--task lm] [--size small] [--steps 50] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from optsearch.discovered import load_zoo
from optsearch.dsl import ProgramOptimizer
from optsearch.dsl.export import export_program
from optsearch.proxy_tasks.registry import get_task

RESULTS = Path(__file__).parent / "results" / "matrix_step_time.json"


def hidden_matrices(task_name: str, size: str) -> dict[str, torch.Size]:
    """The 2-D weights of the task's blocks (Muon's parameters), by name."""
    params = get_task(task_name, size).init(0)
    return {k: v.shape for k, v in params.items() if v.ndim == 2 and k.startswith("blocks.")}


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class PlainMuon:
    """torch.optim.Muon's `_single_tensor_muon` loop with Newton-Schulz in the parameters' dtype."""

    def __init__(self, params: list[torch.Tensor], grads: list[torch.Tensor], lr: float):
        self.params, self.grads, self.lr = params, grads, lr
        self.bufs = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self) -> None:
        a, b, c = 3.4445, -4.7750, 2.0315
        for p, g, buf in zip(self.params, self.grads, self.bufs):
            buf.lerp_(g, 0.05)
            x = g.lerp(buf, 0.95)
            tall = x.size(0) > x.size(1)
            x = x.T if tall else x
            x = x / x.norm().clamp(min=1e-7)
            for _ in range(5):
                gram = x @ x.T
                x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
            x = x.T if tall else x
            p.mul_(1 - self.lr * 0.1)
            p.add_(x, alpha=-self.lr * max(1, p.size(0) / p.size(1)) ** 0.5)


def measure(shapes: list[torch.Size], steps: int, warmup: int, copies: int, lr: float = 0.02) -> dict:
    gen = torch.Generator().manual_seed(0)
    theirs = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    ours = [p.detach().clone() for p in theirs]
    batched = [torch.randn(copies, *s, generator=gen) for s in shapes]
    grads = [torch.randn(s, generator=gen) * 0.01 for s in shapes]
    batched_grads = [torch.randn(copies, *s, generator=gen) * 0.01 for s in shapes]
    for p, g in zip(theirs, grads):
        p.grad = g
    ref = torch.optim.Muon(theirs, lr=lr)
    plain = PlainMuon([p.detach().clone() for p in theirs], grads, lr)
    one = ProgramOptimizer(load_zoo("muon"), ours)
    module: dict = {}
    exec(compile(export_program(load_zoo("muon")), "<exported muon>", "exec"), module)
    exported = {}
    for path, foreach in (("export_foreach", True), ("export_per_tensor", False)):
        params = [torch.nn.Parameter(p.detach().clone()) for p in theirs]
        for p, g in zip(params, grads):
            p.grad = g
        exported[path] = module["Muon"](params, lr=lr, foreach=foreach)
    many = ProgramOptimizer(load_zoo("muon"), batched, batch_dims=1)
    times: dict[str, list[float]] = {"torch": [], "plain": [], "interpreter": [], "interpreter_b": [],
                                     **{path: [] for path in exported}}
    for k in range(warmup + steps):
        t = {"torch": timed(ref.step), "plain": timed(plain.step), "interpreter": timed(lambda: one.step(grads, lr)),
             "interpreter_b": timed(lambda: many.step(batched_grads, lr)),
             **{path: timed(opt.step) for path, opt in exported.items()}}
        if k >= warmup:
            for key, v in t.items():
                times[key].append(v)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "torch_muon_ms": 1e3 * med["torch"],
        "plain_f32_ms": 1e3 * med["plain"],
        "ratio_b1_vs_plain_f32": med["interpreter"] / med["plain"],
        "interpreter_ms": 1e3 * med["interpreter"],
        f"interpreter_b{copies}_ms": 1e3 * med["interpreter_b"],
        "ratio_b1": med["interpreter"] / med["torch"],
        f"ratio_b{copies}_per_copy": med["interpreter_b"] / copies / med["torch"],
        **{f"{path}_ms": 1e3 * med[path] for path in exported},
        **{f"ratio_{path}": med[path] / med["torch"] for path in exported},
        **{f"ratio_{path}_vs_plain_f32": med[path] / med["plain"] for path in exported},
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="lm")
    ap.add_argument("--size", default="small")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    shapes = hidden_matrices(args.task, args.size)
    result = measure(list(shapes.values()), args.steps, args.warmup, args.copies)
    result.update(task=args.task, size=args.size, threads=args.threads, steps=args.steps,
                  parameters={k: list(v) for k, v in shapes.items()}, torch=torch.__version__,
                  machine=platform.processor() or platform.machine(), python=sys.version.split()[0])
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.task}/{args.size}: {len(shapes)} hidden matrices, {args.threads} thread(s), median of {args.steps} steps")
    print(f"  torch.optim.Muon          {result['torch_muon_ms']:8.3f} ms")
    print(f"  plain float32 Muon loop   {result['plain_f32_ms']:8.3f} ms")
    print(f"  interpreter muon, B=1     {result['interpreter_ms']:8.3f} ms   ratio {result['ratio_b1']:.2f} "
          f"(against the float32 loop: {result['ratio_b1_vs_plain_f32']:.2f})")
    b = args.copies
    print(f"  interpreter muon, B={b}     {result[f'interpreter_b{b}_ms']:8.3f} ms   "
          f"per copy ratio {result[f'ratio_b{b}_per_copy']:.2f}")
    for path in ("export_foreach", "export_per_tensor"):
        print(f"  exported muon, {path[7:]:<10} {result[f'{path}_ms']:8.3f} ms   ratio {result[f'ratio_{path}']:.2f} "
              f"(against the float32 loop: {result[f'ratio_{path}_vs_plain_f32']:.2f})")


if __name__ == "__main__":
    main()
