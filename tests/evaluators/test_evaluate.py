"""A cascade's first stage: the task's budget shortened with its schedule compressed."""
import pytest

from optsearch.evaluators.evaluate import resolve_task, shortened


def test_a_first_stage_trains_a_fraction_of_the_steps_with_the_schedule_compressed_into_them():
    task = resolve_task("mlp/medium")              # 3000 steps, 150 of warmup, cosine
    short = shortened(task, 0.25)
    assert (short.budget.steps, short.budget.warmup) == (750, 38)
    assert short.budget.lr_at(750) < 0.01 < short.budget.lr_at(375)      # the cosine ends within the stage
    b = task.budget
    assert (short.budget.lr, short.budget.batch_size, short.budget.schedule) == (b.lr, b.batch_size, "cosine")
    assert task.budget.steps == 3000 and short.reference == task.reference   # the task itself is untouched
    assert shortened(task, 1.0) is task


def test_a_first_stage_keeps_the_reference_but_not_adamws_checkpoint_curve():
    task = resolve_task("mlp/small")
    short = shortened(task, 0.25)
    assert task.calibration is not None and short.reference == task.reference
    assert short.calibration is None       # the curve belongs to the full schedule: no hopeless check


@pytest.mark.parametrize("fraction", [0.0, 1.5, -0.25])
def test_a_fraction_outside_zero_to_one_is_refused(fraction):
    with pytest.raises(ValueError, match="fraction must be in"):
        shortened(resolve_task("quadratic/small"), fraction)
