"""Tuned AdamW reference scores, one per task and size, stored in `references.json` beside this file.

`optsearch calibrate` measures them (AdamW's learning rate and weight decay tuned on a grid,
through the same evaluator as every candidate) and writes the file; tasks read their
reference from it, so fitness never depends on an untuned baseline. The file is committed.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

REFERENCES_PATH = Path(__file__).with_name("references.json")


@dataclass(frozen=True)
class Reference:
    """AdamW's best score on one task/size, and how it was found."""

    metric: float                    # mean over seeds of the best validation metric
    lr: float                        # the tuned learning rate (absolute)
    weight_decay: float              # the tuned decoupled weight decay
    seeds: tuple[int, ...]
    curve: dict[int, float] = field(default_factory=dict)  # step -> smoothed training loss at checkpoints
    initial_loss: float | None = None
    grid: dict = field(default_factory=dict)               # what was searched, and every score
    versions: dict = field(default_factory=dict)           # python, torch, data hash


def load_references(path: Path = REFERENCES_PATH) -> dict[str, Reference]:
    """Every stored reference, keyed `"task/size"`; empty when the file does not exist."""
    if not path.exists():
        return {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    out = {}
    for key, r in raw.items():
        r = dict(r)
        r["seeds"] = tuple(r.get("seeds", ()))
        r["curve"] = {int(k): float(v) for k, v in r.get("curve", {}).items()}
        out[key] = Reference(**r)
    return out


def save_reference(key: str, ref: Reference, path: Path = REFERENCES_PATH) -> None:
    """Store `ref` under `key` (replacing an older one), atomically."""
    raw = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    raw[key] = asdict(ref)
    raw = dict(sorted(raw.items()))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".references.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(raw, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
