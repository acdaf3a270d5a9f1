"""MLflow records of a study: one experiment, one parent run, one child run per trial.

Built from ``conf/tracking/`` by its ``_target_``. Runs are created and ended explicitly
through ``MlflowClient`` (no fluent "active run", no HF integration callback), so nothing opens
runs of its own and every run gets a final status. No other module touches ``MlflowClient``:
resume, recovery, the report and the export use the operations below.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.base.errors import ConfigError, first_line
from harness.base.files import check_writable, sqlite_path
from harness.base.secrets import mask
from harness.records import schema
from harness.records._parent import find_parent_run, open_experiment
from harness.records._reach import reach
from harness.records.provenance import Provenance, record
from harness.records.runs import RunView, TrialRun, as_params, now_ms

log = logging.getLogger(__name__)


class Tracker:
    """The MLflow side of one study (experiment ``experiment_name``)."""

    def __init__(self, uri: str, artifact_location: str | None, experiment_name: str) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = str(uri)
        self.experiment_name = str(experiment_name)
        try:
            self._client = MlflowClient(tracking_uri=self.uri)
        except Exception as exc:
            raise ConfigError("tracking.uri",
                              mask(f"cannot use '{uri}': {first_line(exc)}")) from None
        self._artifact_location = str(artifact_location) if artifact_location else None
        self._experiment_id: str | None = None
        self._parent_run_id: str | None = None
        self.provenance: Provenance | None = None  # recorded on every run created here

    @property
    def parent_run_id(self) -> str | None:
        return self._parent_run_id

    def check(self) -> None:
        """Fail early (before anything is created) when the tracking store cannot be reached
        (a server that does not answer: in seconds, not after MLflow's minutes of retries)."""
        if self.uri.startswith(("http://", "https://")):
            reach(self.uri)
        for attempt in (1, 2):  # workers creating a new store's tables at once: retry once
            try:
                path = sqlite_path(self.uri)
                if path is not None:  # SQLAlchemy needs the folder to exist
                    path.parent.mkdir(parents=True, exist_ok=True)
                self._client.search_experiments(max_results=1)
                break
            except Exception as exc:
                if attempt == 2 or isinstance(exc, OSError):
                    raise ConfigError("tracking.uri",
                                      mask(f"cannot use '{self.uri}': {first_line(exc)}")) from None
                time.sleep(1.0)
        location = self._artifact_location
        if location and ("://" not in location or location.startswith("file://")):
            check_writable("tracking.artifact_location", location.removeprefix("file://"))

    # ------------------------------------------------------------------ the study's parent run

    def open_study(self, parent_run_id: str | None, params: Mapping[str, Any]) -> str:
        """Find the study's parent run again (or create it); it is RUNNING while trials run.

        Workers that start at the same moment agree on one parent run: creating the experiment
        succeeds for exactly one of them (MLflow refuses a second experiment of the same name);
        that one creates the parent run and records it as the experiment tag
        ``harness.parent_run_id``, which the others wait for.
        """
        self._experiment_id, created = open_experiment(self._client, self.experiment_name,
                                                       self._artifact_location)
        run = None if created else find_parent_run(self._client, self._experiment_id,
                                                   parent_run_id)
        if run is None:
            run = self._client.create_run(
                self._experiment_id, run_name=self.experiment_name,
                tags={schema.ROLE_TAG: schema.ROLE_STUDY,
                      schema.STUDY_NAME_TAG: self.experiment_name},
            )
            self._client.log_batch(run.info.run_id, params=as_params(params))
            self._client.set_experiment_tag(self._experiment_id, schema.PARENT_EXPERIMENT_TAG,
                                            run.info.run_id)
            record(self._client, run.info.run_id, self.provenance)
        else:
            self._client.update_run(run.info.run_id, status="RUNNING")
        self._parent_run_id = run.info.run_id
        return self._parent_run_id

    def attach(self, parent_run_id: str | None) -> bool:
        """Use the existing parent run ``parent_run_id`` (a stored study: report, export);
        False where this store does not hold it."""
        if not parent_run_id:
            return False
        try:
            run = self._client.get_run(parent_run_id)
        except Exception:
            return False
        self._experiment_id, self._parent_run_id = run.info.experiment_id, parent_run_id
        return True

    def record_best(self, study_summary: Mapping[str, Any], finished: int) -> None:
        """Best trial so far on the parent run: tags, and ``best_value`` against trials finished."""
        from mlflow.entities import Metric, RunTag

        tags = [RunTag(k, str(v)) for k, v in study_summary["tags"].items()]
        metrics = [Metric(k, float(v), now_ms(), finished)
                   for k, v in study_summary["metrics"].items()]
        self._client.log_batch(self._parent_run_id, metrics=metrics, tags=tags)

    def log_study_folder(self, folder: Path, artifact_path: str) -> str:
        """A folder (the report) as an artifact of the parent run; returns where it is."""
        self._client.log_artifacts(self._parent_run_id, str(folder), artifact_path)
        return self.artifact_uri(self._parent_run_id, artifact_path)

    def close_study(self, status: str = "FINISHED") -> None:
        if self._parent_run_id:
            self._client.set_terminated(self._parent_run_id, status=status)

    # ------------------------------------------------------------------ trial runs

    def start_trial(self, number: int, params: Mapping[str, Any], config_yaml: str) -> TrialRun:
        run = self._client.create_run(self._experiment_id, run_name=f"trial-{number}",
                                      tags=self._trial_tags(number))
        trial_run = TrialRun(self._client, run.info.run_id)
        self._client.log_batch(trial_run.run_id, params=as_params(params))
        record(self._client, trial_run.run_id, self.provenance)
        self._client.log_text(trial_run.run_id, config_yaml, schema.CONFIG_ARTIFACT)
        return trial_run

    def trial_runs(self, number: int | None = None, status: str | None = None) -> list[RunView]:
        """The study's child runs (of one trial number, with one status)."""
        query = [f"tags.`{schema.ROLE_TAG}` = '{schema.ROLE_TRIAL}'",
                 f"tags.`{schema.PARENT_RUN_TAG}` = '{self._parent_run_id}'"]
        if number is not None:
            query.append(f"tags.`{schema.NUMBER_TAG}` = '{number}'")
        if status is not None:
            query.append(f"attributes.status = '{status}'")
        runs = self._client.search_runs([self._experiment_id], filter_string=" and ".join(query),
                                        max_results=1000)
        return [_view(run) for run in runs]

    def close_trial_run(self, number: int, state: str, status: str,
                        tags: Mapping[str, Any]) -> None:
        """End trial ``number``'s run with the trial's Optuna ``state`` and the MLflow ``status``
        (the run is created here if the trial's process died before creating it)."""
        run_ids = [run.run_id for run in self.trial_runs(number)]
        if not run_ids:
            run_ids = [self._client.create_run(self._experiment_id, run_name=f"trial-{number}",
                                               tags=self._trial_tags(number)).info.run_id]
        for run_id in run_ids:
            TrialRun(self._client, run_id).finish(state, tags, status=status)

    def has_checkpoint(self, run_id: str) -> bool:
        return schema.CHECKPOINT_ARTIFACT in {a.path for a in self._client.list_artifacts(run_id)}

    def delete_checkpoint(self, run_id: str, reason: str) -> None:
        """Remove a run's ``checkpoint`` artifact (bounded disk); the run keeps a tag saying why."""
        from mlflow.entities import RunTag
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        try:
            uri = self._client.get_run(run_id).info.artifact_uri
            get_artifact_repository(uri, tracking_uri=self.uri).delete_artifacts(
                schema.CHECKPOINT_ARTIFACT)
        except Exception as exc:  # a store that cannot delete keeps it: say so, go on
            log.warning("could not remove the checkpoint of MLflow run %s: %s", run_id,
                        first_line(exc))
            return
        self._client.log_batch(run_id, tags=[RunTag(schema.CHECKPOINT_TAG, reason)])

    # ------------------------------------------------------------------ reading runs back

    def run(self, run_id: str | None) -> RunView | None:
        """What run ``run_id`` recorded, or None where it cannot be read."""
        if not run_id:
            return None
        try:
            return _view(self._client.get_run(run_id))
        except Exception:
            return None

    def download(self, run_id: str, path: str, destination: Path) -> Path:
        """An artifact of a run, downloaded into ``destination``."""
        return Path(self._client.download_artifacts(run_id, path, str(destination)))

    def artifact_uri(self, run_id: str, path: str = "") -> str:
        uri = self._client.get_run(run_id).info.artifact_uri
        return f"{uri}/{path}" if path else uri

    def register_model(self, run_id: str, folder: Path, name: str) -> str:
        """Log ``folder`` to the run (``model/``) and register it as a new version of the
        registered model ``name``; returns "model 'NAME' version N"."""
        from mlflow.exceptions import MlflowException

        self._client.log_artifacts(run_id, str(folder), schema.MODEL_ARTIFACT)
        try:
            self._client.create_registered_model(name, description=f"Exports of study '{name}'")
        except MlflowException as exc:
            if "already exists" not in str(exc).lower():
                raise
        version = self._client.create_model_version(
            name, self.artifact_uri(run_id, schema.MODEL_ARTIFACT), run_id=run_id)
        return f"model '{name}' version {version.version}"

    # ------------------------------------------------------------------ helpers

    def _trial_tags(self, number: int) -> dict[str, str]:
        return {schema.PARENT_RUN_TAG: self._parent_run_id, schema.ROLE_TAG: schema.ROLE_TRIAL,
                schema.STUDY_NAME_TAG: self.experiment_name, schema.NUMBER_TAG: str(number),
                schema.STATE_TAG: "RUNNING"}


def _view(run: Any) -> RunView:
    return RunView(run.info.run_id, dict(run.data.params), dict(run.data.metrics),
                   dict(run.data.tags), run.info.artifact_uri)

