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
from urllib.parse import urlsplit, urlunsplit

from harness.errors import ConfigError

log = logging.getLogger(__name__)

ROLE_TAG = "harness.role"  # "study" for the parent run, "trial" for a child run
# Optuna's trial states → MLflow run statuses.
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED", "KILLED": "KILLED"}


def redact(url: str) -> str:
    """A URL without its password (storage and tracking URLs end up in tags and summaries)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


class Tracker:
    """The MLflow side of one study."""

    def __init__(self, uri: str, artifact_location: str | None, experiment_name: str) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.experiment_name = experiment_name
        _ensure_sqlite_folder(uri)
        self.client = MlflowClient(tracking_uri=uri)
        self._artifact_location = artifact_location
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None

    def check(self) -> None:
        """Fail early (before anything is created) when the tracking store cannot be reached."""
        try:
            self.client.search_experiments(max_results=1)
        except Exception as exc:
            raise ConfigError("tracking.uri", f"cannot use '{redact(self.uri)}': {exc}") from exc

    def open_study(self, parent_run_id: str | None, params: Mapping[str, Any]) -> str:
        """Find the study's parent run again (or create it); it is RUNNING while trials run."""
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            location = None
            if self._artifact_location:
                location = self._artifact_location
                if "://" not in location:
                    location = (Path(location).resolve() / self.experiment_name).as_uri()
            self.experiment_id = self.client.create_experiment(
                self.experiment_name, artifact_location=location
            )
        else:
            if experiment.lifecycle_stage == "deleted":
                raise ConfigError(
                    "study.name",
                    f"MLflow experiment '{self.experiment_name}' is deleted: restore it "
                    "(mlflow experiments restore) or choose another study.name",
                )
            self.experiment_id = experiment.experiment_id
        run = self._find_run(parent_run_id)
        if run is None:
            run = self.client.create_run(
                self.experiment_id,
                run_name=self.experiment_name,
                tags={ROLE_TAG: "study", "optuna.study_name": self.experiment_name},
            )
            self.client.log_batch(run.info.run_id, params=_params(params))
        else:
            self.client.update_run(run.info.run_id, status="RUNNING")
        self.parent_run_id = run.info.run_id
        return self.parent_run_id

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

    def start_trial(self, number: int, params: Mapping[str, Any], config_yaml: str) -> TrialRun:
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"trial-{number}",
            tags={
                "mlflow.parentRunId": self.parent_run_id,
                ROLE_TAG: "trial",
                "optuna.study_name": self.experiment_name,
                "optuna.trial_number": str(number),
                "optuna.state": "RUNNING",
            },
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
        self.client.log_artifacts(self.run_id, str(folder), "checkpoint")

    def finish(self, state: str, tags: Mapping[str, Any] | None = None) -> None:
        """Record the trial's final Optuna state and end the run with the matching status."""
        from mlflow.entities import RunTag

        all_tags = {"optuna.state": state, **(tags or {})}
        self.client.log_batch(
            self.run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in all_tags.items()]
        )
        self.client.set_terminated(self.run_id, status=RUN_STATUS[state])
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
