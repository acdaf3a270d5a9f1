"""The final record as the parent run and the summary read it."""

from __future__ import annotations

import math

from harness.records import final


def _record(trial: int, test: dict | None) -> dict:
    values = {"1": 0.8, "2": 0.82}
    return {
        "trial": trial,
        "seed": 2,
        "seeds": 2,
        "seed_value": 0.82,
        "configs": {str(trial): {"mean": 0.81, "sd": 0.014, "values": values}},
        "test": test or {"none": "not scored: the seeds' checkpoints were removed"},
    }


def test_a_new_choice_without_a_test_score_leaves_no_stale_one_on_the_parent_run():
    """Issue 27 item 1: the earlier choice's test score does not stand for the new choice."""
    scored = _record(3, {"values": {"1": 0.7, "2": 0.72}, "mean": 0.71, "sd": 0.014})
    metrics = final.parent_metrics(_record(5, None), "accuracy", earlier=scored)
    assert metrics["final_trial"] == 5
    assert math.isnan(metrics["final_test_accuracy_mean"])
    assert math.isnan(metrics["shipped_test_accuracy"])
    assert final.parent_metrics(scored, "accuracy", earlier=scored) == final.parent_metrics(
        scored, "accuracy"
    )


def test_a_loss_gain_is_read_as_lower_is_better():
    gain = {"values": {"1": -0.05, "2": -0.07}, "mean": -0.06, "sd": 0.014}
    assert final.gain_words(gain, "loss") == "-0.0600 ± 0.0140 in loss (2 seeds)"
    assert final.gain_words(gain, "accuracy").endswith("the recipe did better")
