"""State memory per parameter: reported by `evaluate` beside fitness (table and JSON of `optsearch
eval`), and the penalty a search can put on it."""
from __future__ import annotations

import json
import math

import pytest

from optsearch.cli import main
from optsearch.discovered import load_zoo
from optsearch.dsl import parse_program
from optsearch.evaluators import evaluate
from optsearch.evaluators.fitness import memory_penalized
from optsearch.proxy_tasks import get_task

QUADRATIC = get_task("quadratic", "small")
# The quadratic task's parameters: a (256,) vector, one row of a 1 x 256 matrix, and a 16 x 16 matrix.
PARAMS = 256 + 16 * 16
ADAFACTOR = ((1 + 256) + (16 + 16)) / PARAMS


@pytest.mark.parametrize("name, expected", [("sgd", 0.0), ("lion", 1.0), ("adamw", 2.0), ("adafactor", ADAFACTOR)])
def test_evaluate_reports_optimizer_state_per_parameter(name, expected):
    result = evaluate(load_zoo(name), [QUADRATIC], lr_multipliers=(1.0,))  # sgd diverges here: still reported
    assert result.state_per_param == pytest.approx(expected)
    assert result.scores[0].state_per_param == pytest.approx(expected)
    assert result.to_json()["state_per_param"] == pytest.approx(expected)


def test_an_invalid_program_has_no_state_memory():
    program = parse_program("def f(w, g, lr):\n    u = g * lr\n    return u\n")
    bad = type(program)(program.name, program.params, program.body, ("nothing",))
    result = evaluate(bad, [QUADRATIC])
    assert result.status == "invalid" and result.state_per_param is None


def test_eval_shows_state_per_parameter_beside_fitness(capsys):
    argv = ["eval", "adafactor", "--task", "quadratic", "--lr-multipliers", "1", "--threads", "1"]
    assert main(argv) == 0
    table = capsys.readouterr().out.splitlines()
    header = table[0].split()
    assert header[header.index("fitness") + 1] == "state/param"
    row = table[1].split()
    assert row[header.index("state/param")] == f"{ADAFACTOR:.3g}"
    assert f"optimizer state {ADAFACTOR:.3g} numbers per parameter" in table[-1]
    assert main(argv + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["state_per_param"] == pytest.approx(ADAFACTOR)
    assert out["scores"][0]["state_per_param"] == pytest.approx(ADAFACTOR)


def test_memory_penalty_prefers_less_state():
    assert memory_penalized(0.02, 2.0, 0.01) == pytest.approx(0.0)          # AdamW
    assert memory_penalized(0.02, 1.0, 0.01) == pytest.approx(0.01)         # Lion
    assert memory_penalized(0.02, 0.05, 0.0) == 0.02                        # no penalty
    assert memory_penalized(-math.inf, 0.0, 0.01) == -math.inf              # failures stay failures
    assert memory_penalized(0.02, None, 0.01) == 0.02                       # unknown memory
    with pytest.raises(ValueError, match="must be >= 0, got -1"):
        memory_penalized(0.0, 1.0, -1)

