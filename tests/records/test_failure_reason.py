"""Why a failed trial failed, worded in one place (harness.records.trials.failure_reason) for the
run's error tag, the failure limit and the report."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from harness.records import schema, trials


def _failed(**attrs):
    return optuna.trial.create_trial(state=TrialState.FAIL, user_attrs=attrs)


def test_the_error_then_the_interruption_then_optuna_s_own_failure():
    error, stopped = "ValueError: broken", "interrupted by SIGTERM"
    assert trials.failure_reason(
        _failed(**{schema.ERROR_ATTR: error, schema.INTERRUPTED_ATTR: stopped})
    ) == (error)
    assert trials.failure_reason(_failed(**{schema.INTERRUPTED_ATTR: stopped})) == stopped
    assert trials.failure_reason(_failed()).startswith("no reason recorded: Optuna failed it")
