"""Runs say how to reproduce them: git commits (the harness checkout's, the working
directory's repository's), command line, user, library versions, and the data as MLflow
dataset inputs whose digests are the study's input fingerprints."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import optuna
import pytest

from harness.records import provenance, schema
from harness.study import run_sweep
from tests.helpers.sweeps import stores

ROOT = Path(__file__).resolve().parents[2]


def git(folder: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def project(tmp_path) -> Path:
    """A user's own git repository (the working directory), one commit, clean."""
    folder = tmp_path / "project"
    folder.mkdir()
    git(folder, "init", "-q")
    (folder / "notes.txt").write_text("my experiments\n")
    git(folder, "add", "notes.txt")
    git(
        folder, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "first"
    )
    return folder


@pytest.mark.integration
def test_every_run_records_code_command_user_versions_and_its_data(
    sweep_overrides, project, monkeypatch, compose
):
    overrides = [
        *sweep_overrides,
        "study.n_trials=2",
        "pruner=none",
        "train.num_train_epochs=1",
        "report.enabled=false",
    ]
    monkeypatch.chdir(project)  # the working directory: another repository than the harness's
    run_sweep(compose(overrides))
    cfg, study, client, parent, children = stores(overrides)
    inputs = study.user_attrs[schema.INPUTS_ATTR]
    harness_commit = git(ROOT, "rev-parse", "HEAD")
    harness_dirty = (
        "true" if git(ROOT, "status", "--porcelain", "--untracked-files=no") else "false"
    )
    assert len(children) == 2
    for run in [parent, *children.values()]:
        tags = run.data.tags
        assert tags[provenance.GIT_COMMIT_TAG] == harness_commit
        assert tags[provenance.GIT_DIRTY_TAG] == harness_dirty
        assert tags[provenance.MLFLOW_COMMIT_TAG] == harness_commit
        assert tags[provenance.WORKDIR_COMMIT_TAG] == git(project, "rev-parse", "HEAD")
        assert tags[provenance.WORKDIR_DIRTY_TAG] == "false"
        assert tags[provenance.WORKDIR_ROOT_TAG] == str(project.resolve())
        assert tags[provenance.MLFLOW_USER_TAG]
        assert tags[provenance.COMMAND_TAG].startswith("python ")
        for library in ("torch", "transformers", "peft", "datasets", "optuna", "mlflow"):
            assert tags[f"harness.version.{library}"] == metadata.version(library), library
        assert tags["harness.version.harness"]
        assert tags[provenance.MODEL_TAG] == inputs["model.name_or_path"]
        # the data: one dataset input per split, its digest the study's fingerprint
        logged = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
        assert sorted(logged) == ["train", "validation"]
        for split, dataset in logged.items():
            digest, rows = inputs[f"data.{split}_file"].removeprefix("sha256:").split(" (")
            assert dataset.digest == digest and dataset.name == "files"
            assert json.loads(dataset.profile)["num_rows"] == int(rows.split()[0])
            assert dataset.source_type == "local"
            assert json.loads(dataset.source)["uri"] == str(
                Path(str(cfg.data[f"{split}_file"])).resolve()
            )
        assert run.inputs.dataset_inputs[0].tags[0].key == "mlflow.data.context"
    assert int(json.loads(logged["train"].profile)["num_rows"]) == 240
    assert len(optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage).trials) == 2


def test_the_command_line_is_recorded_with_passwords_masked(monkeypatch):
    monkeypatch.setattr(
        sys,
        "orig_argv",
        [
            "/opt/venv/bin/python",
            "-m",
            "harness.sweep",
            "+sweep=lora",
            "study.storage=postgresql://alice:s3cret-pw@db.example/optuna",
            "study.warm_start.storage=postgresql://alice@db.example/optuna?password=hunter22",
        ],
    )
    line = provenance.command_line()
    assert line == (
        "python -m harness.sweep +sweep=lora "
        "study.storage=postgresql://alice:***@db.example/optuna "
        "'study.warm_start.storage=postgresql://alice@db.example/optuna?password=***'"
    )
    assert provenance.code_tags()[provenance.MLFLOW_SOURCE_TAG] == "harness.sweep"


def test_outside_a_git_repository_no_commit_is_claimed(tmp_path):
    assert provenance.git_state(tmp_path) is None
