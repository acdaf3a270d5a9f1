"""The fake fine-tune (``tests/helpers/fake_finetune.py``) against the real one: the same config
gives the same records on both, by name (the Optuna trial's attributes, the MLflow trial run's
metrics, params, tags and artifacts, the checkpoint's files, the parent run's metrics), so that
what the fast tier checks on the fake is what a real sweep records."""

from __future__ import annotations

import shutil

import optuna

from harness.study import run_sweep
from tests.helpers.configs import overrides_in
from tests.helpers.fake_finetune import FakeFineTune
from tests.helpers.sweeps import assert_consistent
from tests.study.test_crash_safety import artifact_files


def shape(overrides: list[str]) -> dict[str, object]:
    """The names of everything a one-trial study recorded (values left out)."""
    _, study, client, parent, children = assert_consistent(overrides, n_trials=1)
    (trial,) = study.trials
    run = children[trial.number]
    return {
        "state": trial.state,
        "intermediate steps": sorted(trial.intermediate_values),
        "trial attrs": sorted(trial.user_attrs),
        "compute": sorted(trial.user_attrs["compute"]),
        "metrics": sorted(run.data.metrics),
        "params": sorted(run.data.params),
        "tags": sorted(run.data.tags),
        "artifacts": sorted(a.path for a in client.list_artifacts(run.info.run_id)),
        "checkpoint": sorted(artifact_files(client, run.info.run_id)),
        "parent metrics": sorted(client.get_run(parent.info.run_id).data.metrics),
        "study attrs": sorted(study.user_attrs),
    }


def test_the_fake_records_what_the_real_fine_tune_records(
    tmp_path, tiny_model_dir, sentiment_files, compose, mlflow_template
):
    extra = ["study.n_trials=1", "pruner=none", "train.num_train_epochs=1", "report.enabled=false"]
    shapes = {}
    for kind in ("real", "fake"):
        folder = tmp_path / kind
        (folder / "mlruns").mkdir(parents=True)
        shutil.copy(mlflow_template, folder / "mlruns" / "mlflow.db")
        overrides = [*overrides_in(folder, tiny_model_dir, sentiment_files), *extra]
        run_sweep(compose(overrides), finetune=FakeFineTune() if kind == "fake" else None)
        shapes[kind] = shape(overrides)
    assert shapes["fake"] == shapes["real"]
    assert shapes["real"]["state"] == optuna.trial.TrialState.COMPLETE
    assert shapes["real"]["checkpoint"]  # a checkpoint of both was logged
