"""Trials queued before the sampler's own: a set given by hand (study.enqueue) and the best
trials of another study (study.warm_start), run first, marked on their MLflow runs, and queued
once: a resume queues nothing again, even when the other study has a better trial by then."""

from __future__ import annotations

import optuna
import pytest

from harness.records import schema
from harness.study import run_sweep
from tests.helpers.sweeps import stores

pytestmark = pytest.mark.integration  # a sweep of the tiny BERT (fast tier: test_fast_search)

TrialState = optuna.trial.TrialState
Float, Cat = optuna.distributions.FloatDistribution, optuna.distributions.CategoricalDistribution
DISTRIBUTIONS = {
    "train.learning_rate": Float(1e-3, 1.0, log=True),
    "peft.config.r": Cat([4, 8, 16]),
}
MANUAL = {"train.learning_rate": 0.035, "peft.config.r": 4, "peft.config.lora_alpha": 8}


def add_trial(study, lr: float, r: int, value: float, state=TrialState.COMPLETE) -> None:
    study.add_trial(
        optuna.create_trial(
            state=state,
            value=value if state == TrialState.COMPLETE else None,
            intermediate_values={0: value},
            params={"train.learning_rate": lr, "peft.config.r": r},
            distributions=DISTRIBUTIONS,
        )
    )


@pytest.fixture
def other_study(tmp_path):
    """Another study (real SQLite storage): trials 1 then 0 are its best that fit the quick
    sweep's space (learning rate 1e-2 … 5e-2): 2 is better but outside it, 3 was pruned."""
    url = f"sqlite:///{tmp_path}/other.db"
    study = optuna.create_study(study_name="earlier", storage=url, direction="maximize")
    add_trial(study, 0.02, 4, 0.6)
    add_trial(study, 0.03, 8, 0.9)
    add_trial(study, 0.9, 8, 0.95)
    add_trial(study, 0.04, 16, 0.99, state=TrialState.PRUNED)
    add_trial(study, 0.025, 16, 0.1)
    return study, url


# ~35 s; the recipe, enqueued first, keeps queueing in the default run (tests/study/test_recipe.py)
@pytest.mark.slow
def test_queued_trials_run_first_once_and_are_marked(sweep_overrides, compose, other_study):
    other, url = other_study
    overrides = [
        *sweep_overrides,
        "pruner=none",
        "report.enabled=false",
        "train.num_train_epochs=1",
        "study.warm_start.name=earlier",
        f"study.warm_start.storage={url}",
        "study.warm_start.top_k=2",
        "study.enqueue=[{train.learning_rate: 0.035, peft.config.r: 4, peft.config.lora_alpha: 8}]",
    ]
    run_sweep(compose([*overrides, "study.n_trials=4"]))
    _, study, _, _, runs = stores(overrides)
    trials = study.trials
    expected = [
        (MANUAL, "manual"),
        (other.trials[1].params, "warm_start:earlier#1"),
        (other.trials[0].params, "warm_start:earlier#0"),
    ]
    for trial, (params, mark) in zip(trials, expected, strict=False):
        assert trial.state == TrialState.COMPLETE
        assert {k: trial.params[k] for k in params} == params, trial.number
        assert trial.user_attrs[schema.ENQUEUED_ATTR] == mark
        assert runs[trial.number].data.tags[schema.ENQUEUED_TAG] == mark
    assert schema.ENQUEUED_ATTR not in trials[3].user_attrs  # the sampler's own
    assert schema.ENQUEUED_TAG not in runs[3].data.tags
    assert study.user_attrs[schema.WARM_START_ATTR]["name"] == "earlier"

    add_trial(other, 0.045, 16, 1.0)  # a better trial there now: not queued on resume
    run_sweep(compose([*overrides, "study.n_trials=5"]))
    _, study, _, _, runs = stores(overrides)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 5
    marked = [t.user_attrs.get(schema.ENQUEUED_ATTR) for t in study.trials]
    assert marked == ["manual", "warm_start:earlier#1", "warm_start:earlier#0", None, None]
