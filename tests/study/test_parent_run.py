"""The MLflow parent run belongs to one Optuna study: another study of the same name (its storage
deleted and made again, or another storage) gets its own, and never touches the first's runs; a
parent run from before the binding is adopted on resume."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from harness.records import schema
from harness.study import run_sweep
from harness.study.output_dir import OWNER_FILE

pytestmark = pytest.mark.integration  # sweeps of the tiny BERT


def runs_of(client, experiment_name):
    experiment = client.get_experiment_by_name(experiment_name)
    return client.search_runs([experiment.experiment_id], max_results=1000)


# 15-35 s (two studies); kept out of the default run (under 10 minutes)
@pytest.mark.slow
def test_a_new_study_with_an_old_name_gets_its_own_parent_run(sweep_overrides, compose, tmp_path):
    first = [*sweep_overrides, "study.n_trials=1", "report.enabled=false"]
    cfg = compose(first)
    run_sweep(cfg)
    client = MlflowClient(str(cfg.tracking.uri))
    before = {
        r.info.run_id: (r.info.status, r.data.tags.get(schema.PARENT_RUN_TAG))
        for r in runs_of(client, cfg.study.name)
    }
    old = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    old_parent = old.user_attrs[schema.PARENT_RUN_ATTR]
    # the same command with another storage (as after deleting sweeps/): a new study
    second = [
        *first,
        f"study.storage=sqlite:///{tmp_path}/other.db",
        f"study.output_dir={tmp_path}/other-output",
    ]
    run_sweep(compose(second))
    new = optuna.load_study(study_name=cfg.study.name, storage=f"sqlite:///{tmp_path}/other.db")
    new_parent = new.user_attrs[schema.PARENT_RUN_ATTR]
    assert new_parent != old_parent
    assert new.user_attrs[schema.STUDY_UID_ATTR] != old.user_attrs[schema.STUDY_UID_ATTR]
    tags = client.get_run(new_parent).data.tags
    assert tags[schema.STUDY_UID_TAG] == new.user_attrs[schema.STUDY_UID_ATTR]
    assert tags[schema.STORAGE_TAG] == f"sqlite:///{tmp_path}/other.db"
    after = {
        r.info.run_id: (r.info.status, r.data.tags.get(schema.PARENT_RUN_TAG))
        for r in runs_of(client, cfg.study.name)
    }
    assert {k: after[k] for k in before} == before  # the first study's runs are untouched
    children = [k for k, (_, parent) in after.items() if parent == new_parent]
    assert len(children) == 1 and children[0] not in before


@pytest.mark.slow  # a 15-30 s sweep, kept out of the default run (under 10 minutes)
def test_a_parent_run_from_before_the_binding_is_adopted(sweep_overrides, compose):
    overrides = [*sweep_overrides, "study.n_trials=1", "report.enabled=false"]
    cfg = compose(overrides)
    run_sweep(cfg)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    parent = study.user_attrs[schema.PARENT_RUN_ATTR]
    client = MlflowClient(str(cfg.tracking.uri))
    # as an older harness left them: no uid on either side
    client.delete_tag(parent, schema.STUDY_UID_TAG)
    study._storage.set_study_user_attr(study._study_id, schema.STUDY_UID_ATTR, None)
    mark = Path(str(cfg.study.output_dir)) / OWNER_FILE  # its output folder marked by name
    mark.write_text(json.dumps({"study": cfg.study.name}) + "\n")
    run_sweep(compose([*overrides, "study.n_trials=2"]))
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    assert study.user_attrs[schema.PARENT_RUN_ATTR] == parent
    assert (
        client.get_run(parent).data.tags[schema.STUDY_UID_TAG]
        == study.user_attrs[schema.STUDY_UID_ATTR]
    )
    assert (
        len(
            [
                r
                for r in runs_of(client, cfg.study.name)
                if r.data.tags.get(schema.ROLE_TAG) == schema.ROLE_STUDY
            ]
        )
        == 1
    )
    assert json.loads(mark.read_text())["uid"] == study.user_attrs[schema.STUDY_UID_ATTR]
