"""End to end: real Optuna storage, real MLflow store, real Trainer with a tiny random model.

The tiny model (2 layers, 32 wide) fine-tunes on a few hundred short texts in seconds; what is
asserted is the harness's contract, not the model's accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from harness.records import schema
from harness.study import run_sweep
from tests.helpers.sweeps import finished_sweep, stores

pytestmark = pytest.mark.integration  # end-to-end sweeps of the tiny BERT

TrialState = optuna.trial.TrialState


@pytest.fixture
def sweep(compose):
    """``sweep(overrides)``: run the sweep those overrides compose (in this process)."""
    return lambda overrides: run_sweep(compose(overrides))


@pytest.fixture(scope="module")
def three_trials(tmp_path_factory, tiny_model_dir, sentiment_files):
    """One three-trial sweep, shared by the tests that only read it."""
    # fp32: a test below scores the best checkpoint in fp32 (see tests/export/test_export.py)
    return finished_sweep(
        tmp_path_factory,
        "three-trials",
        tiny_model_dir,
        sentiment_files,
        "study.n_trials=3",
        "pruner=none",
        "train.mixed_precision=no",
    )


def test_a_three_trial_sweep_records_every_trial_in_optuna_and_mlflow(three_trials):
    overrides, summary = three_trials
    cfg, study, client, parent, children = stores(overrides)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert (summary.complete, summary.pruned, summary.failed) == (3, 0, 0)
    assert sorted(children) == [0, 1, 2]

    param_names = None
    for number, run in children.items():
        trial = study.trials[number]
        assert run.info.run_name == f"trial-{number}"
        assert run.data.tags[schema.PARENT_RUN_TAG] == parent.info.run_id
        assert run.data.tags[schema.STATE_TAG] == "COMPLETE" and run.info.status == "FINISHED"
        # sampled values and the fixed choices, under the same names in every run
        params = run.data.params
        assert {"model", "data", "method"} <= set(params)
        assert (params["model"], params["data"], params["method"]) == ("tiny", "files", "lora")
        for name, value in trial.params.items():
            assert (
                float(params[name]) == pytest.approx(value)
                if isinstance(value, float)
                else json.loads(params[name]) == value
            )
        param_names = param_names or set(params)
        assert set(params) == param_names
        # the value is the best evaluation, not the last
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert len(history) > 1
        assert trial.value == pytest.approx(max(m.value for m in history))
        assert trial.intermediate_values  # reported to the pruner at every evaluation
        assert len(trial.intermediate_values) == len(history)
        for curve in ("val_loss", "train_loss", "learning_rate"):
            assert len(client.get_metric_history(run.info.run_id, curve)) > 1, curve
        metrics = run.data.metrics
        assert 0 < metrics["trainable_params"] < metrics["total_params"]
        assert metrics["wall_time_s"] > 0 and metrics["overhead_s"] >= 0
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert schema.CONFIG_ARTIFACT in artifacts
        # checkpoints.keep=2: the best two trials keep theirs
        assert (schema.CHECKPOINT_ARTIFACT in artifacts) == (number in summary.kept_checkpoints)

    best = study.best_trial
    assert parent.data.tags[schema.BEST_TRIAL_TAG] == str(best.number)
    assert float(parent.data.tags["best_value"]) == pytest.approx(best.value)
    # the parent run's description states the study
    note = parent.data.tags[schema.DESCRIPTION_TAG]
    assert f"fine-tuned with lora on data '{cfg.data.name}'" in note
    assert "Trials: 3 finished of 3 (3 complete, 0 pruned), 0 failed, 0 running." in note
    assert "Compute: " in note
    assert f"Best trial: {best.number}, accuracy {best.value:.4f} (" in note
    assert summary.best_number == best.number and summary.best_value == best.value
    assert Path(summary.best_checkpoint, "adapter_model.safetensors").is_file()
    text = summary.format()
    assert "3 complete, 0 pruned, 0 failed" in text and "mlflow ui --backend-store-uri" in text


def test_the_best_checkpoint_loads_back_and_scores_its_value(
    three_trials, tmp_path, sentiment_files, tiny_model_dir
):
    import torch
    from peft import PeftConfig, PeftModel
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from harness.data import load_labelled_data

    overrides, _ = three_trials
    cfg, study, client, _, children = stores(overrides)
    run = children[study.best_trial.number]
    folder = Path(
        client.download_artifacts(run.info.run_id, schema.CHECKPOINT_ARTIFACT, str(tmp_path))
    )
    # the README's recipe
    assert PeftConfig.from_pretrained(folder).base_model_name_or_path == str(tiny_model_dir)
    base = AutoModelForSequenceClassification.from_pretrained(
        PeftConfig.from_pretrained(folder).base_model_name_or_path,
        config=AutoConfig.from_pretrained(folder),
    )
    labels = json.loads((folder / "labels.json").read_text())["id2label"]
    assert {int(k): v for k, v in labels.items()} == base.config.id2label
    model = PeftModel.from_pretrained(base, folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)

    data = load_labelled_data(cfg.data)
    assert model.config.id2label == dict(enumerate(data.label_names))
    val = data.splits["validation"]
    with torch.no_grad():
        batch = tokenizer(
            list(val["text"]), padding=True, truncation=True, max_length=128, return_tensors="pt"
        )
        predicted = model(**batch).logits.argmax(-1).tolist()
    accuracy = sum(p == y for p, y in zip(predicted, list(val["label"]), strict=True)) / len(val)
    assert accuracy == pytest.approx(study.best_value, abs=1e-6)


def test_a_pruner_forced_to_prune_stops_trials_cleanly(sweep_overrides, sweep):
    overrides = [*sweep_overrides, "study.n_trials=2", "pruner=threshold", "pruner.lower=2.0"]
    summary = sweep(overrides)
    cfg, study, client, parent, children = stores(overrides)
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 2
    assert summary.pruned == 2 and summary.best_number is None
    for number, run in children.items():
        assert run.data.tags[schema.STATE_TAG] == "PRUNED" and run.info.status == "FINISHED"
        # stopped at its first evaluation, out of 8
        assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == 1
        assert list(study.trials[number].intermediate_values) == [1]
        assert schema.CHECKPOINT_ARTIFACT not in {
            a.path for a in client.list_artifacts(run.info.run_id)
        }
    assert parent.info.status == "FINISHED"


# ~40 s; the kill -9 test keeps resume in the default run (tests/study/test_crash_safety.py)
@pytest.mark.slow
def test_resume_runs_only_the_missing_trials_with_new_parameters(sweep_overrides, compose, sweep):
    first = [*sweep_overrides, "study.n_trials=2", "pruner=none"]
    sweep(first)
    _, before, _, parent_before, _ = stores(first)
    earlier = [(t.number, t.params, t.value, t.datetime_complete) for t in before.trials]

    again = [*sweep_overrides, "study.n_trials=4", "pruner=none"]
    summary = sweep(again)
    _, after, _, parent_after, children = stores(again)
    assert len(after.trials) == 4 and summary.complete == 4
    assert [(t.number, t.params, t.value, t.datetime_complete) for t in after.trials[:2]] == earlier
    new_params = [t.params for t in after.trials[2:]]
    assert all(p not in [e[1] for e in earlier] for p in new_params)  # no replayed samples
    assert parent_after.info.run_id == parent_before.info.run_id  # the parent run is found again
    assert sorted(children) == [0, 1, 2, 3]

    done = sweep(again)  # already complete: nothing runs
    assert (
        len(
            optuna.load_study(
                study_name=after.study_name, storage=compose(again).study.storage
            ).trials
        )
        == 4
    )
    assert done.complete == 4


def test_full_fine_tuning_checkpoint_loads_with_transformers(sweep_overrides, tmp_path, sweep):
    from transformers import AutoModelForSequenceClassification

    overrides = [
        *sweep_overrides,
        "+sweep=full",
        "study.n_trials=1",
        "pruner=none",
        "train.num_train_epochs=1",
    ]
    overrides.remove("+sweep=lora")
    overrides = [o for o in overrides if not o.startswith("search_space=")]
    summary = sweep(overrides)
    assert summary.complete == 1
    model = AutoModelForSequenceClassification.from_pretrained(summary.best_checkpoint)
    assert model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    _, _, client, _, children = stores(overrides)
    assert children[0].data.params["method"] == "none"
    assert children[0].data.metrics["trainable_params"] == children[0].data.metrics["total_params"]


def test_resuming_with_other_settings_is_refused(sweep_overrides, sweep):
    from harness.base.errors import ConfigError

    sweep([*sweep_overrides, "study.n_trials=1", "pruner=none"])
    with pytest.raises(ConfigError, match="train.num_train_epochs") as err:
        sweep([*sweep_overrides, "study.n_trials=2", "train.num_train_epochs=3"])
    assert err.value.field == "study.name"


def test_early_stopping_ends_a_trial_and_records_where(sweep_overrides, sweep):
    # nothing improves accuracy by more than 1.0: the trial stops at its second evaluation
    overrides = [
        *sweep_overrides,
        "study.n_trials=1",
        "pruner=none",
        "train.early_stopping_patience=1",
        "train.early_stopping_threshold=1.0",
    ]
    summary = sweep(overrides)
    _, study, client, _, children = stores(overrides)
    assert summary.complete == 1  # stopped early, not pruned
    run = children[0]
    assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == 2
    assert run.data.metrics["stopped_epoch"] == pytest.approx(1.0, abs=0.1)  # 2 evals/epoch
    assert run.data.metrics["epochs_trained"] < 4
    assert 0 < run.data.metrics["trainable_ratio"] < 1
