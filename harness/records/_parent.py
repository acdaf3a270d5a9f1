"""Finding a study's MLflow experiment and parent run again, also when several workers start
at the same moment or a process was killed between two records."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from harness.base.errors import ConfigError
from harness.records import schema

log = logging.getLogger(__name__)


def open_experiment(client: Any, name: str, artifact_location: str | None) -> tuple[str, bool]:
    """Find or create the experiment ``name``: (its id, whether this process created it)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = artifact_location
        if location and "://" not in location:
            location = (Path(location).resolve() / name).as_uri()
        try:
            return client.create_experiment(name, artifact_location=location), True
        except MlflowException:  # another worker created it first
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        raise ConfigError("study.name", f"MLflow experiment '{name}' is deleted: restore it "
                          "(mlflow experiments restore) or choose another study.name")
    return experiment.experiment_id, False


def find_parent_run(client: Any, experiment_id: str, recorded_id: str | None) -> Any:
    """The study's parent run in an existing experiment: the one its creator recorded on the
    experiment, else ``recorded_id`` (the Optuna study's record), else the first run tagged as
    a study run; None when there is none."""
    return (_existing_run(client, experiment_id, _wait_for_parent_tag(client, experiment_id))
            or _existing_run(client, experiment_id, recorded_id)
            or _first_study_run(client, experiment_id))


def _wait_for_parent_tag(client: Any, experiment_id: str, timeout: float = 60.0) -> str | None:
    """The parent run id its creator recorded on the experiment (waits while the experiment
    is new and has no run yet: its creator is about to record it)."""
    deadline = time.monotonic() + timeout
    while True:
        run_id = client.get_experiment(experiment_id).tags.get(schema.PARENT_EXPERIMENT_TAG)
        if run_id or time.monotonic() > deadline:
            return run_id
        if client.search_runs([experiment_id], max_results=1):
            return None  # an experiment from before the tag existed: find the run by tag
        time.sleep(0.25)


def _existing_run(client: Any, experiment_id: str, run_id: str | None) -> Any:
    if not run_id:
        return None
    try:
        run = client.get_run(run_id)
    except Exception:
        log.warning("the study's MLflow run %s is gone: starting a new parent run", run_id)
        return None
    if run.info.lifecycle_stage == "deleted" or run.info.experiment_id != experiment_id:
        return None
    return run


def _first_study_run(client: Any, experiment_id: str) -> Any:
    """The study's parent run when its id was not recorded (a process killed in between)."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{schema.ROLE_TAG}` = '{schema.ROLE_STUDY}'",
        order_by=["attributes.start_time ASC"], max_results=1,
    )
    return runs[0] if runs else None
