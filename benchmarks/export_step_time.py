"""Step time of exported optimizers against the implementations people use today.

Exported AdamW against `torch.optim.AdamW(foreach=True)` and exported Lion against
`lion_pytorch.Lion`, on a stack of Linear layers (~25M float32 parameters, CPU) whose gradients
are fixed random tensors, so only the optimizer step is timed. Each pair runs in this process,
alternating step by step so that both see the same machine state; after a warmup the median of
N steps is kept. Writes `benchmarks/results/export_step_time.json` and prints a table.

    python benchmarks/export_step_time.py [--steps 20] [--width 2048] [--layers 6] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import types
from pathlib import Path

import torch

from optsearch.discovered import load_zoo
from optsearch.dsl.export import export_program

RESULTS = Path(__file__).parent / "results" / "export_step_time.json"


def exported_class(zoo_name: str, class_name: str) -> type[torch.optim.Optimizer]:
    """Export a zoo program and load the module source it writes (no optsearch inside)."""
    module = types.ModuleType(f"exported_{zoo_name}")
    exec(compile(export_program(load_zoo(zoo_name), class_name), module.__name__, "exec"), module.__dict__)
    return getattr(module, class_name)


def model_params(width: int, layers: int, seed: int = 0) -> list[torch.Tensor]:
    """Parameters of `layers` Linear(width, width) layers, with fixed random gradients."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)])
    params = list(net.parameters())
    for p in params:
        p.requires_grad_(False)
        p.grad = torch.randn_like(p) * 1e-3
    return params


def time_pair(make_a, make_b, width: int, layers: int, warmup: int, steps: int) -> tuple[float, float]:
    """Median seconds per step of two optimizers, stepped alternately on their own copies."""
    opt_a, opt_b = make_a(model_params(width, layers)), make_b(model_params(width, layers))
    times: tuple[list[float], list[float]] = ([], [])
    for k in range(warmup + steps):
        for opt, out in ((opt_a, times[0]), (opt_b, times[1])) if k % 2 == 0 else ((opt_b, times[1]), (opt_a, times[0])):
            start = time.perf_counter()
            opt.step()
            if k >= warmup:
                out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per optimizer (median kept)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from lion_pytorch import Lion as LionPytorch

    AdamW, Lion = exported_class("adamw", "AdamW"), exported_class("lion", "Lion")
    lr = 1e-3
    cases = [
        ("AdamW", "exported AdamW (foreach)", lambda p: AdamW(p, lr, foreach=True),
         "torch.optim.AdamW(foreach=True)", lambda p: torch.optim.AdamW(p, lr, foreach=True), 1.05),
        ("Lion", "exported Lion (foreach)", lambda p: Lion(p, lr, foreach=True),
         "lion_pytorch.Lion", lambda p: LionPytorch(p, lr, betas=(0.9, 0.99), weight_decay=0.01), 1.0),
        ("AdamW, per-tensor", "exported AdamW (foreach=False)", lambda p: AdamW(p, lr, foreach=False),
         "torch.optim.AdamW(foreach=False)", lambda p: torch.optim.AdamW(p, lr, foreach=False), None),
    ]
    n_params = sum(p.numel() for p in model_params(args.width, 1)) * args.layers
    rows = []
    for name, ours, make_ours, ref, make_ref, target in cases:
        t_ours, t_ref = time_pair(make_ours, make_ref, args.width, args.layers, args.warmup, args.steps)
        rows.append({"case": name, "exported": ours, "reference": ref, "exported_ms": round(t_ours * 1e3, 3),
                     "reference_ms": round(t_ref * 1e3, 3), "ratio": round(t_ours / t_ref, 4),
                     "target_ratio_max": target, "met": None if target is None else t_ours / t_ref <= target})
    result = {
        "benchmark": "export_step_time", "torch": torch.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(), "device": "cpu", "dtype": "float32", "params": n_params,
        "model": f"{args.layers} x Linear({args.width}, {args.width})", "warmup": args.warmup,
        "steps": args.steps, "statistic": "median seconds per step", "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"{n_params / 1e6:.1f}M float32 parameters on CPU, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; median of {args.steps} steps")
    print(f"{'case':<18} {'exported ms':>12} {'reference ms':>13} {'ratio':>7}  {'target':>7}  reference")
    for r in rows:
        target = f"<={r['target_ratio_max']}" if r["target_ratio_max"] else "-"
        mark = "" if r["met"] is None else (" ok" if r["met"] else " MISSED")
        print(f"{r['case']:<18} {r['exported_ms']:>12.2f} {r['reference_ms']:>13.2f} {r['ratio']:>7.3f}  "
              f"{target:>7}{mark}  {r['reference']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
