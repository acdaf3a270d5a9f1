"""Finding a study's MLflow experiment and parent run again, also when several workers start
at the same moment or a process was killed between two records."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from harness.base.errors import ConfigError
from harness.records import schema

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

log = logging.getLogger(__name__)


def open_experiment(
    client: MlflowClient, name: str, artifact_location: str | None
) -> tuple[str, bool]:
    """Find or create the experiment ``name``: (its id, whether this process created it)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = artifact_location
        if location and "://" not in location:
            location = (Path(location).resolve() / name).as_uri()
        try:
            return str(client.create_experiment(name, artifact_location=location)), True
        except MlflowException:  # another worker created it first
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        raise ConfigError(
            "study.name",
            f"MLflow experiment '{name}' is deleted: restore it "
            "(mlflow experiments restore) or choose another study.name",
        )
    return str(experiment.experiment_id), False


def find_parent_run(
    client: MlflowClient, experiment_id: str, recorded_id: str | None, uid: str
) -> Run | None:
    """The parent run of the Optuna study ``uid`` in an existing experiment, or None.

    Another study of the same name (a new storage, a deleted one recreated, another machine's
    SQLite sharing one MLflow server) has another uid and never gets this one's run. A parent
    run from before runs carried the uid is adopted when the study itself recorded it
    (``recorded_id``)."""
    run = _existing_run(client, experiment_id, recorded_id)
    if run is not None and run.data.tags.get(schema.STUDY_UID_TAG, uid) == uid:
        if schema.STUDY_UID_TAG not in run.data.tags:
            client.set_tag(run.info.run_id, schema.STUDY_UID_TAG, uid)
        return run
    if run is None and recorded_id is None:  # the creator of a new experiment is about to
        _wait_for_parent_tag(client, experiment_id)  # make the parent run: let it finish
    return elected_parent(client, experiment_id, uid)


def elected_parent(client: MlflowClient, experiment_id: str, uid: str) -> Run | None:
    """Study ``uid``'s parent run: the oldest of those tagged with it (workers that created one
    each at the same moment all keep the oldest; the others delete theirs), or None."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{schema.STUDY_UID_TAG}` = '{uid}' and "
        f"tags.`{schema.ROLE_TAG}` = '{schema.ROLE_STUDY}'",
        order_by=["attributes.start_time ASC"],
        max_results=100,
    )
    if not runs:
        return None
    return min(runs, key=lambda r: (r.info.start_time, r.info.run_id))


def _wait_for_parent_tag(
    client: MlflowClient, experiment_id: str, timeout: float = 60.0
) -> str | None:
    """The parent run id its creator recorded on the experiment (waits while the experiment
    is new and has no run yet: its creator is about to record it)."""
    deadline = time.monotonic() + timeout
    while True:
        run_id: str | None = client.get_experiment(experiment_id).tags.get(
            schema.PARENT_EXPERIMENT_TAG
        )
        if run_id or time.monotonic() > deadline:
            return run_id
        if client.search_runs([experiment_id], max_results=1):
            return None  # an experiment from before the tag existed: find the run by tag
        time.sleep(0.25)


def _existing_run(client: MlflowClient, experiment_id: str, run_id: str | None) -> Run | None:
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
