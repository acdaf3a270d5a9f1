"""A study's compute summed from its trials' records (a real in-memory Optuna study)."""

from __future__ import annotations

import optuna
import pytest

from harness.records import schema, trials
from harness.records.compute import study_compute

TrialState = optuna.trial.TrialState


def trial(study, state, trained, planned, **more):
    t = study.ask()
    t.set_user_attr(
        schema.COMPUTE_ATTR,
        {"steps_trained": trained, "steps_planned": planned, "wall_time_s": 10.0, **more},
    )
    if state == TrialState.COMPLETE:
        study.tell(t, 0.5)
    else:
        study.tell(t, state=state)


def test_pruning_early_stopping_and_failures_are_counted_apart():
    study = optuna.create_study(direction="maximize")
    trial(study, TrialState.COMPLETE, 100, 100, train_flos=1e9)  # ran its budget
    trial(study, TrialState.COMPLETE, 60, 100, train_flos=6e8)  # stopped early at 60
    trial(study, TrialState.PRUNED, 25, 100, train_flos=2.5e8)  # pruned at 25
    trial(study, TrialState.FAIL, 30, 100)  # failed after 30
    compute = study_compute(study)
    assert compute.trials == 3 and compute.failed_trials == 1
    assert compute.totals["steps_trained"] == 185 and compute.totals["steps_planned"] == 300
    assert compute.totals["train_flos"] == pytest.approx(1.85e9)
    assert compute.saved_by_pruning == pytest.approx(75 / 300)
    assert compute.saved_by_early_stopping == pytest.approx(40 / 300)
    assert compute.failed == {"steps_trained": 30, "steps_planned": 100, "wall_time_s": 10.0}
    metrics = compute.metrics()
    assert metrics[schema.COMPUTE_SAVED_METRIC] == pytest.approx(0.25)
    assert metrics["total_steps_trained"] == 185 and metrics["failed_steps_trained"] == 30
    line = compute.format()
    assert line.startswith(
        "Compute: 185 of 300 planned training steps (25.0% saved by "
        "pruning, 13.3% by early stopping)"
    )
    assert "1 failed trial(s) cost 30 steps, 10 s wall" in line


def test_a_study_without_finished_trials_has_no_compute_line():
    study = optuna.create_study()
    assert study_compute(study).format() == ""
    assert schema.COMPUTE_SAVED_METRIC not in study_compute(study).metrics()


def test_a_paused_and_continued_configuration_plans_its_budget_once():
    """pruner=promotion: a configuration paused at 25 steps, continued to 50 (paused again),
    then to its end; another paused at 25 for good. Its budget counts once, its steps once."""
    study = optuna.create_study(direction="maximize")

    def segment(state, trained, planned, continues=None, config=None):
        t = study.ask()
        t.set_user_attr(schema.COMPUTE_ATTR, {"steps_trained": trained, "steps_planned": planned})
        if continues is not None:
            t.set_user_attr(schema.CONTINUES_ATTR, continues)
            t.set_user_attr(schema.CONFIG_ATTR, config)
        if state == TrialState.PRUNED:
            t.set_user_attr(schema.PAUSED_ATTR, {"evaluation": 1})
            study.tell(t, state=state)
        else:
            study.tell(t, 0.5)

    segment(TrialState.PRUNED, 25, 100)  # trial 0, paused
    segment(TrialState.PRUNED, 25, 100)  # trial 1, paused for good
    segment(TrialState.PRUNED, 25, 75, continues=0, config=0)  # trial 2: 0 continued
    segment(TrialState.COMPLETE, 50, 50, continues=2, config=0)  # trial 3: to the end
    compute = study_compute(study)
    assert compute.totals["steps_trained"] == 125 and compute.totals["steps_planned"] == 200
    assert compute.saved_by_pruning == pytest.approx(75 / 200)  # config 1's unspent budget
    assert compute.saved_by_early_stopping == 0
    counts = trials.count(study)
    assert (counts["finished"], counts["complete"], counts["pruned"]) == (2, 1, 1)
    assert counts["paused"] == 1 and counts["continued"] == 2
