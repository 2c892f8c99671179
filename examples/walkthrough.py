"""A notebook-style walk-through of optsearch's Python API: search briefly, inspect, export, and
train a small model with the find. Each `# %%` block is a notebook cell (VS Code, Jupytext and
PyCharm run them one by one); `python examples/walkthrough.py [RUN_DIR]` runs them all, in well
under a minute on one core. Run it again and the stored run is reused (resumed, nothing to do).
"""
# %% A short search: from AdamW, on the small quadratic task, evaluated in this process.
import sys
from pathlib import Path

import torch

import optsearch

run_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/walkthrough")
config = {
    "name": "walkthrough",
    "seed": 0,
    "warm_start": "adamw",
    "search": {"population": 6, "tournament": 2},
    "evaluation": {"tasks": ["quadratic/small"], "seeds": 1, "lr_multipliers": [0.3, 1.0]},
    "budget": {"evaluations": 16},
    "funnel": {"tasks": ["quadratic/small"], "seeds": 2, "top": 2, "threshold": -1.0},
    "executor": {"kind": "inline"},
}
run = optsearch.evolve(config, run_dir, resume=(run_dir / "run.db").exists())
print(run)

# %% Inspect: the hall of fame (best program per length), the winner and how it was found.
print("hall of fame:")
print(run.hall_of_fame())
print(f"\nwinner #{run.best_id}:")
print(run.best)
print("its lineage, warm start first:")
print(run.lineage())

# %% Export: a standalone torch.optim module anyone can copy into a project.
found = run.best
path = found.export(run_dir / "found_optimizer.py", class_name="FoundOptimizer")
print(f"exported {path}")

# %% Train a small model with the find, beside AdamW on the same data and initialisation.
def train(make_optimizer, steps: int = 200) -> float:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    x = torch.randn(256, 8)
    y = (x[:, :1] * x[:, 1:2]).sin() + 0.1 * x[:, 2:3]
    opt = make_optimizer(model.parameters())
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    return float(loss)


found_loss = train(lambda params: optsearch.optimizer(found, params, lr=1e-2))
adamw_loss = train(lambda params: torch.optim.AdamW(params, lr=1e-2))
print(f"training loss after 200 steps: found {found_loss:.4f}, torch AdamW {adamw_loss:.4f}")
run.close()
