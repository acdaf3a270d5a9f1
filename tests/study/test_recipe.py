"""The recipe on real stores (real Optuna storage and MLflow store, the scripted fake fine-tune
of tests/helpers/fake_finetune.py: the recipe is study logic): the study's first trial, trained
again by the final stage with exactly the chosen configuration's seeds, and the paired gain over
it recorded as the runs say; studies made without a recipe resume without one. The first test
runs again on the real fine-tune (tiny BERT) in make test-slow; the final stage's runs on the
real fine-tune in the default run: test_final.py's loss study and test_combine.py's ensemble
(the same FinalObjective, with another configuration)."""

from __future__ import annotations

import statistics
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from harness.base.errors import ConfigError
from harness.records import schema, trials
from harness.study import run_sweep
from tests.helpers.configs import write_sentiment_csv
from tests.helpers.fake_finetune import FakeFineTune

TrialState = optuna.trial.TrialState
RECIPE = (
    "{train.learning_rate: 0.01, peft.config.r: 4, peft.config.lora_alpha: 8, "
    "peft.config.lora_dropout: 0.2, train.warmup_steps: 0.1}"
)
RECIPE_PARAMS = {
    "train.learning_rate": 0.01,
    "peft.config.r": 4,
    "peft.config.lora_alpha": 8,
    "peft.config.lora_dropout": 0.2,
    "train.warmup_steps": 0.1,
}


@pytest.fixture
def recipe_overrides(fast_overrides, tmp_path):
    test_file = write_sentiment_csv(tmp_path / "test.csv", 45, seed=3)
    return [
        *[o for o in fast_overrides if o not in ("final.seeds=0", "recipe=null")],
        f"recipe={RECIPE}",
        "study.n_trials=3",
        "train.num_train_epochs=2",
        "final.top_k=1",
        "final.seeds=2",
        f"data.test_file={test_file}",
        "report.enabled=false",
        "pruner=none",
    ]


def runs_by_name(cfg):
    client = MlflowClient(str(cfg.tracking.uri))
    experiment = client.get_experiment_by_name(cfg.study.name)
    return client, {
        r.info.run_name: r for r in client.search_runs([experiment.experiment_id], max_results=1000)
    }


@pytest.mark.parametrize(
    "finetune",
    [pytest.param(FakeFineTune, id="fake"), pytest.param(None, id="real", marks=pytest.mark.slow)],
)
def test_the_recipe_is_trial_0_and_is_measured_with_the_chosen_seeds(
    recipe_overrides, compose, finetune
):
    summary = run_sweep(compose(recipe_overrides), finetune=finetune and finetune())
    cfg = compose(recipe_overrides)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    client, runs = runs_by_name(cfg)
    # the search's first trial, marked on the trial and on its run
    zero = study.trials[0]
    assert zero.user_attrs[schema.ENQUEUED_ATTR] == schema.RECIPE_MARK
    assert zero.params == RECIPE_PARAMS == study.user_attrs[schema.RECIPE_ATTR]
    assert runs["trial-0"].data.tags[schema.ENQUEUED_TAG] == schema.RECIPE_MARK
    record = study.user_attrs[schema.FINAL_ATTR]
    recipe = record["recipe"]
    assert recipe["trial"] == 0 and recipe["params"] == RECIPE_PARAMS
    chosen = record["trial"]
    # the same seeds as the chosen configuration: the same seed values in their configs
    companion = optuna.load_study(
        study_name=trials.final_study_name(cfg.study.name), storage=cfg.study.storage
    )
    done = companion.get_trials(states=(TrialState.COMPLETE,))
    seeds = {
        n: sorted(trials.final_key(r)[1] for r in done if trials.final_key(r)[0] == n)
        for n in {chosen, 0}
    }
    assert seeds[chosen] == seeds[0] == [1, 2]
    for run in done:
        number, seed = trials.final_key(run)
        config = client.download_artifacts(run.user_attrs[schema.RUN_ID_ATTR], "config.yaml")
        assert f"seed: {42 + seed}\n" in Path(config).read_text()
        if number == 0:
            assert run.params == RECIPE_PARAMS
            assert runs[f"final-0-seed{seed}"].data.tags[schema.ENQUEUED_TAG] == "recipe"
    # the test split: read only after every final run ended, for both configurations
    tested = [r for name, r in runs.items() if "test_accuracy" in r.data.metrics]
    assert sorted(r.info.run_name for r in tested) == sorted(
        {f"final-{n}-seed{k}" for n in (chosen, 0) for k in (1, 2)}
    )
    finals = [r for r in runs.values() if r.data.tags.get(schema.ROLE_TAG) == schema.ROLE_FINAL]
    scored_at = min(
        client.get_metric_history(r.info.run_id, "test_accuracy")[0].timestamp for r in tested
    )
    assert scored_at >= max(r.info.end_time for r in finals)
    parent = client.get_run(study.user_attrs[schema.PARENT_RUN_ATTR]).data.metrics
    test = {
        (n, k): runs[f"final-{n}-seed{k}"].data.metrics["test_accuracy"]
        for n in (chosen, 0)
        for k in (1, 2)
    }
    val = {
        (n, k): runs[f"final-{n}-seed{k}"].data.metrics["best_val_accuracy"]
        for n in (chosen, 0)
        for k in (1, 2)
    }
    assert parent["recipe_test_accuracy_mean"] == pytest.approx(
        statistics.fmean(test[(0, k)] for k in (1, 2))
    )
    assert parent["recipe_val_accuracy_mean"] == pytest.approx(
        statistics.fmean(val[(0, k)] for k in (1, 2))
    )
    text = summary.format()
    if chosen == 0:
        # the same runs on both sides: the paired gain is recorded, and it is 0 seed by seed
        assert text.splitlines()[-1].startswith("The chosen configuration is the recipe")
        assert parent["final_test_accuracy_gain_mean"] == 0.0
        assert parent["final_test_accuracy_gain_std"] == 0.0
        assert parent["final_val_accuracy_gain_mean"] == 0.0
        return
    # the paired gain, recomputed from the runs seed by seed
    gains = [test[(chosen, k)] - test[(0, k)] for k in (1, 2)]
    assert parent["final_test_accuracy_gain_mean"] == pytest.approx(statistics.fmean(gains))
    assert parent["final_test_accuracy_gain_std"] == pytest.approx(statistics.stdev(gains))
    val_gains = [val[(chosen, k)] - val[(0, k)] for k in (1, 2)]
    assert parent["final_val_accuracy_gain_mean"] == pytest.approx(statistics.fmean(val_gains))
    assert text.splitlines()[-1].startswith("Chosen vs recipe on test: ")
    words = "no clear gain" if abs(statistics.fmean(gains)) <= statistics.stdev(gains) else "("
    assert words in text.splitlines()[-1]


def test_final_recipe_false_trains_no_recipe_runs(recipe_overrides, compose):
    overrides = [*recipe_overrides, "final.recipe=false", "study.n_trials=2", "final.seeds=1"]
    run_sweep(compose(overrides), finetune=FakeFineTune())
    cfg = compose(overrides)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    assert study.trials[0].params == RECIPE_PARAMS  # still the search's first trial
    record = study.user_attrs[schema.FINAL_ATTR]
    assert "recipe" not in record
    _, runs = runs_by_name(cfg)
    chosen = record["trial"]
    assert sorted(n for n in runs if n.startswith("final-")) == [f"final-{chosen}-seed1"]


def test_a_study_made_without_a_recipe_resumes_without_one(recipe_overrides, compose):
    """As a study made before recipes existed: resumed with a recipe configured, nothing is
    queued or trained again and its final record stays as it was."""
    before = [
        *[o for o in recipe_overrides if not o.startswith("recipe=")],
        "recipe=null",
        "study.n_trials=2",
        "final.seeds=1",
    ]
    run_sweep(compose(before), finetune=FakeFineTune())
    cfg = compose(before)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    snapshot = (
        [(t.number, t.state, t.params) for t in study.trials],
        study.user_attrs[schema.FINAL_ATTR],
    )
    after = [*recipe_overrides, "study.n_trials=2", "final.seeds=1"]
    summary = run_sweep(compose(after), finetune=FakeFineTune())
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    assert (
        [(t.number, t.state, t.params) for t in study.trials],
        study.user_attrs[schema.FINAL_ATTR],
    ) == snapshot
    assert schema.RECIPE_ATTR not in study.user_attrs
    assert "recipe" not in summary.format().lower().split("mlflow ui")[-1]


def test_a_changed_recipe_on_resume_is_refused(recipe_overrides, compose):
    first = [*recipe_overrides, "study.n_trials=1", "final.seeds=0"]
    run_sweep(compose(first), finetune=FakeFineTune())
    changed = [*first, "recipe={train.learning_rate: 0.03}"]
    with pytest.raises(ConfigError, match="was made with the recipe") as error:
        run_sweep(compose(changed), finetune=FakeFineTune())
    assert error.value.field == "recipe"
