"""The statistics of a report: per-seed means, standard errors and paired verdicts."""
import math

import pytest

from optsearch.comparison import Estimate, estimate, mean_over_tasks, paired
from optsearch.report import verdict_line

INF = math.inf


def test_standard_error_is_the_sample_deviation_over_root_seeds():
    e = estimate([1.0, 2.0, 3.0])
    assert e.mean == pytest.approx(2.0) and e.se == pytest.approx(math.sqrt(1 / 3))
    assert estimate([0.5]) == Estimate(0.5, None)                       # one seed: no standard error
    assert estimate([0.5, -INF]).mean is None                           # a failed seed: no mean


def test_a_known_table_gives_a_known_difference_error_and_verdict():
    c = paired([0.10, 0.12, 0.14], [0.05, 0.06, 0.07])
    assert c.differences == pytest.approx((0.05, 0.06, 0.07))
    assert c.mean == pytest.approx(0.06) and c.se == pytest.approx(0.01 / math.sqrt(3))
    assert c.beats == "yes" and c.why is None


def test_a_lead_within_two_standard_errors_is_not_a_win():
    c = paired([0.10, -0.05, 0.01], [0.0, 0.0, 0.0])
    assert c.mean == pytest.approx(0.02) and c.se == pytest.approx(math.sqrt(0.0057 / 3))
    assert c.beats == "no"


def test_pairing_by_seed_removes_what_the_seed_contributes():
    # the seeds differ a lot, the winner leads by 0.05 on each: unpaired, the spreads overlap
    winner, baseline = [0.10, 0.30, 0.50], [0.05, 0.25, 0.45]
    assert estimate(winner).mean - estimate(baseline).mean < 2 * estimate(winner).se
    assert paired(winner, baseline).beats == "yes"
    assert paired(baseline, baseline).beats == "no"      # equal on every seed: 0 is not above 0


def test_failures_and_single_seeds_say_why_there_is_no_number():
    lost = paired([0.1, -INF], [0.0, 0.0], seeds=[4, 5])
    assert (lost.beats, lost.why, lost.differences) == ("no", "it failed on seed 5", (0.1, None))
    failed_baseline = paired([0.1, 0.2], [-INF, 0.0])
    assert (failed_baseline.beats, failed_baseline.mean) == ("n/a", None)
    assert failed_baseline.why == "the baseline failed on seed 0"
    single = paired([0.1], [0.0])
    assert (single.beats, single.mean, single.se) == ("n/a", pytest.approx(0.1), None)
    with pytest.raises(ValueError, match="differ in number: 2 and 1"):
        paired([0.1, 0.2], [0.0])


def test_the_mean_over_tasks_is_per_seed_and_fails_with_any_task():
    assert mean_over_tasks([[0.1, 0.2], [0.3, -INF]]) == [pytest.approx(0.2), -INF]
    with pytest.raises(ValueError, match="different numbers of seeds"):
        mean_over_tasks([[0.1, 0.2], [0.3]])


def test_a_comparison_reads_as_a_sentence():
    c = paired([0.10, 0.12, 0.14], [0.05, 0.06, 0.07])
    as_json = {"mean": c.mean, "se": c.se, "beats": c.beats, "why": c.why}
    assert verdict_line("adamw", "lm/medium", as_json) == "beats adamw on lm/medium by +0.0600 ± 0.0058 (2 SE: yes)"
    assert verdict_line("reference", "mean", {"mean": None, "se": None, "beats": "no", "why": "it failed on seed 1"}) \
        == "beats the tuned-AdamW reference on the mean over tasks: no (it failed on seed 1)"
