"""Evaluations keep freed memory in the process (glibc thresholds) without changing a single number."""
import json
import os
import subprocess
import sys

import pytest

SCRIPT = """
import json, resource
from optsearch.evaluators.allocator import keep_freed_memory
from optsearch.evaluators import evaluate
from optsearch.discovered import load_zoo
r = evaluate(load_zoo("lion"),
             ["quadratic/small"], seeds=(0,), lr_multipliers=(1.0,))
print(json.dumps({"kept": keep_freed_memory(), "fitness": r.fitness, "metrics": r.scores[0].metrics,
                  "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt}))
"""


def _evaluate_in_child(keep: str) -> dict:
    env = dict(os.environ, OPTSEARCH_KEEP_FREED_MEMORY=keep, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keeping_freed_memory_changes_no_number_and_can_be_turned_off():
    kept, default = _evaluate_in_child("1"), _evaluate_in_child("0")
    assert kept["kept"] is True and default["kept"] is False
    assert kept["fitness"] == default["fitness"] and kept["metrics"] == default["metrics"]
