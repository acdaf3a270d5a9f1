"""MLflow records of a study: one experiment, one parent run, one child run per trial.

Runs are created and ended explicitly through ``MlflowClient`` (no fluent "active run", no HF
integration callback), so nothing opens runs of its own and every run gets a final status.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness import faults
from harness.errors import ConfigError, first_line
from harness.secrets import mask

log = logging.getLogger(__name__)

ROLE_TAG = "harness.role"  # "study" for the parent run, "trial" for a child run
NUMBER_TAG = "optuna.trial_number"
PARENT_TAG = "harness.parent_run_id"  # experiment tag: the study's parent run
STATE_TAG = "optuna.state"
# Optuna's trial states → MLflow run statuses. A trial stopped by Ctrl-C / SIGTERM is FAIL in
# Optuna and KILLED in MLflow; one that raised, or whose worker died, is FAILED.
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}


class Tracker:
    """The MLflow side of one study."""

    def __init__(self, uri: str, artifact_location: str | None, experiment_name: str) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.experiment_name = experiment_name
        try:
            self.client = MlflowClient(tracking_uri=uri)
        except Exception as exc:
            raise ConfigError("tracking.uri",
                              mask(f"cannot use '{uri}': {first_line(exc)}")) from None
        self._artifact_location = artifact_location
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None

    def check(self) -> None:
        """Fail early (before anything is created) when the tracking store cannot be reached."""
        for attempt in (1, 2):  # workers creating a new store's tables at once: retry once
            try:
                _ensure_sqlite_folder(self.uri)
                self.client.search_experiments(max_results=1)
                break
            except Exception as exc:
                if attempt == 2 or isinstance(exc, OSError):
                    raise ConfigError("tracking.uri",
                                      mask(f"cannot use '{self.uri}': {first_line(exc)}")) from None
                time.sleep(1.0)
        self._check_artifact_location()

    def _check_artifact_location(self) -> None:
        """A local artifact location must be writable."""
        from harness.prepare import check_writable

        location = self._artifact_location
        if location and ("://" not in location or location.startswith("file://")):
            check_writable("tracking.artifact_location", location.removeprefix("file://"))

    def open_study(self, parent_run_id: str | None, params: Mapping[str, Any]) -> str:
        """Find the study's parent run again (or create it); it is RUNNING while trials run.

        Workers that start at the same moment agree on one parent run: creating the experiment
        succeeds for exactly one of them (MLflow refuses a second experiment of the same name);
        that one creates the parent run and records it as the experiment tag
        ``harness.parent_run_id``, which the others wait for.
        """
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(self.experiment_name)
        created = False
        if experiment is None:
            location = None
            if self._artifact_location:
                location = self._artifact_location
                if "://" not in location:
                    location = (Path(location).resolve() / self.experiment_name).as_uri()
            try:
                self.experiment_id = self.client.create_experiment(
                    self.experiment_name, artifact_location=location
                )
                created = True
            except MlflowException:  # another worker created it first
                experiment = self.client.get_experiment_by_name(self.experiment_name)
                if experiment is None:
                    raise
        if not created:
            if experiment.lifecycle_stage == "deleted":
                raise ConfigError(
                    "study.name",
                    f"MLflow experiment '{self.experiment_name}' is deleted: restore it "
                    "(mlflow experiments restore) or choose another study.name",
                )
            self.experiment_id = experiment.experiment_id
        run = None if created else (self._find_run(self._wait_for_parent_tag())
                                    or self._find_run(parent_run_id)
                                    or self._find_parent_by_tag())
        if run is None:
            run = self.client.create_run(
                self.experiment_id,
                run_name=self.experiment_name,
                tags={ROLE_TAG: "study", "optuna.study_name": self.experiment_name},
            )
            self.client.log_batch(run.info.run_id, params=_params(params))
            self.client.set_experiment_tag(self.experiment_id, PARENT_TAG, run.info.run_id)
        else:
            self.client.update_run(run.info.run_id, status="RUNNING")
        self.parent_run_id = run.info.run_id
        return self.parent_run_id

    def _wait_for_parent_tag(self, timeout: float = 60.0) -> str | None:
        """The parent run id its creator recorded on the experiment (waits while the experiment
        is new and has no run yet: its creator is about to record it)."""
        deadline = time.monotonic() + timeout
        while True:
            experiment = self.client.get_experiment(self.experiment_id)
            run_id = experiment.tags.get(PARENT_TAG)
            if run_id or time.monotonic() > deadline:
                return run_id
            if self.client.search_runs([self.experiment_id], max_results=1):
                return None  # an experiment from before the tag existed: find the run by tag
            time.sleep(0.25)

    def _find_run(self, run_id: str | None) -> Any:
        if not run_id:
            return None
        try:
            run = self.client.get_run(run_id)
        except Exception:
            log.warning("the study's MLflow run %s is gone: starting a new parent run", run_id)
            return None
        if run.info.lifecycle_stage == "deleted" or run.info.experiment_id != self.experiment_id:
            return None
        return run

    def _find_parent_by_tag(self) -> Any:
        """The study's parent run when its id was not recorded (a process killed in between)."""
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'study'",
            order_by=["attributes.start_time ASC"], max_results=1,
        )
        return runs[0] if runs else None

    def trial_runs(self, number: int | None = None, status: str | None = None) -> list[Any]:
        """The study's child runs (of one trial number, with one status)."""
        query = [f"tags.`{ROLE_TAG}` = 'trial'",
                 f"tags.`mlflow.parentRunId` = '{self.parent_run_id}'"]
        if number is not None:
            query.append(f"tags.`{NUMBER_TAG}` = '{number}'")
        if status is not None:
            query.append(f"attributes.status = '{status}'")
        return self.client.search_runs([self.experiment_id], filter_string=" and ".join(query),
                                       max_results=1000)

    def close_trial_run(self, number: int, state: str, status: str,
                        tags: Mapping[str, Any]) -> None:
        """End trial ``number``'s run with the trial's Optuna ``state`` and the MLflow ``status``
        (the run is created here if the trial's process died before creating it)."""
        runs = self.trial_runs(number)
        if not runs:
            runs = [self.client.create_run(self.experiment_id, run_name=f"trial-{number}",
                                           tags=self._trial_tags(number))]
        for run in runs:
            TrialRun(self.client, run.info.run_id).finish(state, tags, status=status)

    def delete_checkpoint(self, run_id: str, reason: str) -> None:
        """Remove a run's ``checkpoint`` artifact (bounded disk); the run keeps a tag saying why."""
        from mlflow.entities import RunTag
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        try:
            uri = self.client.get_run(run_id).info.artifact_uri
            get_artifact_repository(uri, tracking_uri=self.uri).delete_artifacts("checkpoint")
        except Exception as exc:  # a store that cannot delete keeps it: say so, go on
            log.warning("could not remove the checkpoint of MLflow run %s: %s", run_id,
                        first_line(exc))
            return
        self.client.log_batch(run_id, tags=[RunTag("checkpoint", reason)])

    def _trial_tags(self, number: int) -> dict[str, str]:
        return {
            "mlflow.parentRunId": self.parent_run_id,
            ROLE_TAG: "trial",
            "optuna.study_name": self.experiment_name,
            NUMBER_TAG: str(number),
            STATE_TAG: "RUNNING",
        }

    def start_trial(self, number: int, params: Mapping[str, Any], config_yaml: str) -> TrialRun:
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"trial-{number}",
            tags=self._trial_tags(number),
        )
        trial_run = TrialRun(self.client, run.info.run_id)
        self.client.log_batch(trial_run.run_id, params=_params(params))
        self.client.log_text(trial_run.run_id, config_yaml, "config.yaml")
        return trial_run

    def record_best(self, study_summary: Mapping[str, Any], finished: int) -> None:
        """Best trial so far on the parent run: tags, and ``best_value`` against trials finished."""
        from mlflow.entities import Metric, RunTag

        tags = [RunTag(k, str(v)) for k, v in study_summary["tags"].items()]
        metrics = [
            Metric(k, float(v), _now(), finished) for k, v in study_summary["metrics"].items()
        ]
        self.client.log_batch(self.parent_run_id, metrics=metrics, tags=tags)

    def close_study(self, status: str = "FINISHED") -> None:
        if self.parent_run_id:
            self.client.set_terminated(self.parent_run_id, status=status)

    def artifact_uri(self, run_id: str, path: str = "") -> str:
        uri = self.client.get_run(run_id).info.artifact_uri
        return f"{uri}/{path}" if path else uri


class TrialRun:
    """The child run of one trial."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.ended = False

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = _now()
        self.client.log_batch(
            self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()]
        )

    def log_checkpoint(self, folder: Path) -> None:
        """The checkpoint folder as the run's ``checkpoint`` artifact, file by file."""
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                relative = path.parent.relative_to(folder)
                where = "checkpoint" if relative == Path(".") else f"checkpoint/{relative}"
                self.client.log_artifact(self.run_id, str(path), where)
                faults.hit("artifact")

    def log_traceback(self, text: str) -> None:
        """A failed trial's traceback, as the run's ``traceback.txt`` (best effort)."""
        try:
            self.client.log_text(self.run_id, text, "traceback.txt")
        except Exception as exc:
            log.warning("could not log the traceback: %s", first_line(exc))

    def finish(self, state: str, tags: Mapping[str, Any] | None = None,
               status: str | None = None) -> None:
        """Record the trial's final Optuna state and end the run (``status``: the MLflow status,
        by default the one matching ``state``)."""
        from mlflow.entities import RunTag

        all_tags = {STATE_TAG: state, **(tags or {})}
        self.client.log_batch(
            self.run_id, tags=[RunTag(k, mask(str(v))[:5000]) for k, v in all_tags.items()]
        )
        self.client.set_terminated(self.run_id, status=status or RUN_STATUS[state])
        self.ended = True


def _params(params: Mapping[str, Any]) -> list[Any]:
    from mlflow.entities import Param

    def text(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value)

    return [Param(str(k), text(v)[:6000]) for k, v in params.items()]


def _now() -> int:
    return int(time.time() * 1000)


def _ensure_sqlite_folder(uri: str) -> None:
    """``sqlite:///mlruns/mlflow.db`` needs its folder to exist before SQLAlchemy opens it."""
    if uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
        Path(uri.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
