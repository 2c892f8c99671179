"""Step time of exported optimizers, on each of their code paths, against the implementations
people use today.

Exported AdamW (fused, foreach and per-tensor paths) against `torch.optim.AdamW` (fused=True,
foreach=True, foreach=False), and exported Lion (the same three paths) against `lion_pytorch.Lion`,
on stacks of Linear layers (float32, CPU) whose gradients are fixed random tensors, so only the
optimizer step is timed, at ~1M and ~25M parameters. All contenders of one optimizer run in this
process, interleaved step by step (the order rotating each round) so that all see the same machine
state; after a warmup the median of N steps is kept. The first step (state creation, and for the
fused path the compile: the first call of a freshly exported class, with torch's on-disk compile
cache as it is) is timed apart. Minor page faults per step count full-size allocations: a fresh
temporary of a large tensor is faulted in page by page. Writes
`benchmarks/results/export_step_time.json` and prints a table.

    python benchmarks/export_step_time.py --threads 1 [--steps 15] [--sizes 1M,25M] [--device cuda]

With `--device cuda` the same table is made on a GPU (each step synchronized; page faults are then
host-side only and say nothing of GPU memory).
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
import types
from pathlib import Path

import torch

from optsearch.discovered import load_zoo
from optsearch.dsl.export import export_program

RESULTS = Path(__file__).parent / "results" / "export_step_time.json"
SIZES = {"1M": (512, 4), "25M": (2048, 6)}  # name -> (width, layers) of the Linear stack
TARGETS = {  # (optimizer, size, exported path, reference) -> the largest ratio the issue accepts
    ("AdamW", "25M", "fused", "torch.optim.AdamW(fused=True)"): 1.3,
    ("Lion", "25M", "fused", "lion_pytorch.Lion"): 0.5,
    ("Lion", "1M", "fused", "lion_pytorch.Lion"): 0.5,
}


def exported_class(zoo_name: str, class_name: str) -> type[torch.optim.Optimizer]:
    """Export a zoo program and load the module source it writes (no optsearch inside)."""
    module = types.ModuleType(f"exported_{zoo_name}")
    exec(compile(export_program(load_zoo(zoo_name), class_name), module.__name__, "exec"), module.__dict__)
    return getattr(module, class_name)


def model_params(width: int, layers: int, seed: int = 0, device: str = "cpu") -> list[torch.Tensor]:
    """Parameters of `layers` Linear(width, width) layers, with fixed random gradients."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)]).to(device)
    params = list(net.parameters())
    for p in params:
        p.requires_grad_(False)
        p.grad = torch.randn_like(p) * 1e-3
    return params


def contenders(optimizer: str, lr: float = 1e-3) -> dict[str, object]:
    """Name -> a function making the optimizer over a list of parameters."""
    if optimizer == "AdamW":
        ours = exported_class("adamw", "AdamW")
        return {"exported fused": lambda p: ours(p, lr, fused=True),
                "exported foreach": lambda p: ours(p, lr, foreach=True),
                "exported per-tensor": lambda p: ours(p, lr, foreach=False),
                "torch.optim.AdamW(fused=True)": lambda p: torch.optim.AdamW(p, lr, fused=True),
                "torch.optim.AdamW(foreach=True)": lambda p: torch.optim.AdamW(p, lr, foreach=True),
                "torch.optim.AdamW(foreach=False)": lambda p: torch.optim.AdamW(p, lr, foreach=False)}
    from lion_pytorch import Lion as LionPytorch

    ours = exported_class("lion", "Lion")
    return {"exported fused": lambda p: ours(p, lr, fused=True),
            "exported foreach": lambda p: ours(p, lr, foreach=True),
            "exported per-tensor": lambda p: ours(p, lr, foreach=False),
            "lion_pytorch.Lion": lambda p: LionPytorch(p, lr, betas=(0.9, 0.99), weight_decay=0.01)}


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_interleaved(makers: dict, width: int, layers: int, warmup: int, steps: int,
                     device: str = "cpu") -> dict[str, dict]:
    """Per contender: the first step's seconds, the median seconds and page faults per later step."""
    opts = {name: make(model_params(width, layers, device=device)) for name, make in makers.items()}
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    names = list(opts)
    first, times, faults = {}, {n: [] for n in names}, {n: [] for n in names}
    for name in names:
        sync()
        start = time.perf_counter()
        opts[name].step()
        sync()
        first[name] = time.perf_counter() - start
    for k in range(warmup + steps):
        order = names[k % len(names):] + names[:k % len(names)]
        for name in order:
            sync()
            f0, start = minor_faults(), time.perf_counter()
            opts[name].step()
            sync()
            if k >= warmup:
                times[name].append(time.perf_counter() - start)
                faults[name].append(minor_faults() - f0)
    out = {}
    for name in names:
        compiled = getattr(type(opts[name]), "compiled_step", None)
        fused_ran = name == "exported fused" and compiled is not None
        out[name] = {"first_step_ms": round(first[name] * 1e3, 2),
                     "median_ms": round(statistics.median(times[name]) * 1e3, 3),
                     "page_faults_per_step": statistics.median(faults[name]),
                     **({"compiles": compiled.compiles, "compile_error": compiled.error} if fused_ran else {})}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15, help="timed steps per optimizer (median kept)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--sizes", default="1M,25M", help=f"comma-separated, of {', '.join(SIZES)}")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"JSON to write (default: {RESULTS}, or export_step_time_cuda.json on cuda)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    out = args.out or (RESULTS if args.device == "cpu" else RESULTS.with_name("export_step_time_cuda.json"))
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    for s in sizes:
        if s not in SIZES:
            parser.error(f"--sizes: unknown size {s!r} (choose from {', '.join(SIZES)})")

    rows = []
    for size in sizes:
        width, layers = SIZES[size]
        n_params = (width * width + width) * layers
        for optimizer, reference in (("AdamW", "torch.optim.AdamW(fused=True)"), ("Lion", "lion_pytorch.Lion")):
            result = time_interleaved(contenders(optimizer), width, layers, args.warmup, args.steps, args.device)
            ref_ms = result[reference]["median_ms"]
            for name, r in result.items():
                target = TARGETS.get((optimizer, size, name.removeprefix("exported "), reference))
                ratio = r["median_ms"] / ref_ms
                rows.append({"optimizer": optimizer, "size": size, "params": n_params, "contender": name,
                             **r, "reference": reference, "ratio": round(ratio, 3), "target_ratio_max": target,
                             "met": None if target is None else ratio <= target})
    result = {
        "benchmark": "export_step_time", "torch": torch.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(), "device": args.device, "dtype": "float32",
        "model": {s: f"{SIZES[s][1]} x Linear({SIZES[s][0]}, {SIZES[s][0]})" for s in sizes},
        "warmup": args.warmup, "steps": args.steps, "statistic": "median over interleaved steps",
        "results": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"float32 on {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}; median of "
          f"{args.steps} interleaved steps; ratio against the first reference of each block")
    print(f"{'optimizer':<6} {'size':>4}  {'contender':<33} {'first ms':>9} {'step ms':>9} {'ratio':>6} "
          f"{'faults/step':>11}  target")
    for r in rows:
        target = "-" if r["target_ratio_max"] is None else f"<={r['target_ratio_max']}" + (
            " ok" if r["met"] else " MISSED")
        print(f"{r['optimizer']:<6} {r['size']:>4}  {r['contender']:<33} {r['first_step_ms']:>9.1f} "
              f"{r['median_ms']:>9.2f} {r['ratio']:>6.3f} {r['page_faults_per_step']:>11.0f}  {target}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
