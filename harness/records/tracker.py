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
from typing import TYPE_CHECKING, Any

from harness.base.errors import ConfigError, first_line
from harness.base.files import check_writable, sqlite_path
from harness.base.secrets import mask
from harness.records import schema
from harness.records._parent import elected_parent, find_parent_run, open_experiment
from harness.records.provenance import Provenance, record
from harness.records.reach import connect, reach_server
from harness.records.runs import (
    RunView,
    TrialRun,
    as_params,
    monitored_runs,
    now_ms,
    start_system_metrics,
    stop_system_metrics,
)

if TYPE_CHECKING:
    from mlflow.entities import Run

log = logging.getLogger(__name__)


class Tracker:
    """The MLflow side of one study (experiment ``experiment_name``)."""

    def __init__(
        self,
        uri: str,
        artifact_location: str | None,
        experiment_name: str,
        system_metrics: bool = True,
        system_metrics_interval: float = 10.0,
    ) -> None:
        self.uri = str(uri)
        self.system_metrics = bool(system_metrics)  # MLflow's monitor on every trial run
        try:
            self.system_metrics_interval = float(system_metrics_interval)
        except (TypeError, ValueError):
            self.system_metrics_interval = float("nan")
        if not self.system_metrics_interval > 0:
            raise ConfigError(
                "tracking.system_metrics_interval",
                f"seconds between system-metrics samples, more than 0 (not "
                f"{system_metrics_interval!r})",
            )
        self._monitored: set[str] = set()  # trial runs whose system-metrics monitor this started
        self.experiment_name = str(experiment_name)
        try:
            self._client = connect(self.uri)
        except Exception as exc:
            raise ConfigError(
                "tracking.uri", mask(f"cannot use '{uri}': {first_line(exc)}")
            ) from None
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
            reach_server(self.uri)
        for attempt in range(1, 6):  # processes creating a new store's tables at once: retry
            try:
                path = sqlite_path(self.uri)
                if path is not None:  # SQLAlchemy needs the folder to exist
                    path.parent.mkdir(parents=True, exist_ok=True)
                self._client.search_experiments(max_results=1)
                break
            except Exception as exc:
                if attempt == 5 or isinstance(exc, OSError):
                    raise ConfigError(
                        "tracking.uri", mask(f"cannot use '{self.uri}': {first_line(exc)}")
                    ) from None
                time.sleep(1.0)
        location = self._artifact_location
        if location and ("://" not in location or location.startswith("file://")):
            check_writable("tracking.artifact_location", location.removeprefix("file://"))

    # ------------------------------------------------------------------ the study's parent run

    def open_study(
        self, parent_run_id: str | None, params: Mapping[str, object], identity: Mapping[str, str]
    ) -> str:
        """Find the study's parent run again (or create it); it is RUNNING while trials run.

        It is bound to the Optuna study's identity (``identity``: tags, the study's uid among
        them): another study of the same name gets its own. Workers starting together agree on
        one: one of them creates the experiment; in an existing one, all keep the oldest.
        """
        uid = identity[schema.STUDY_UID_TAG]
        self._experiment_id, created = open_experiment(
            self._client, self.experiment_name, self._artifact_location
        )
        run = (
            None
            if created
            else find_parent_run(self._client, self._experiment_id, parent_run_id, uid)
        )
        if run is None:
            run = self._client.create_run(
                self._experiment_id,
                run_name=self.experiment_name,
                tags={
                    schema.ROLE_TAG: schema.ROLE_STUDY,
                    **identity,
                    schema.STUDY_NAME_TAG: self.experiment_name,
                },
            )
            self._client.log_batch(run.info.run_id, params=as_params(params))
            if created:
                self._client.set_experiment_tag(
                    self._experiment_id, schema.PARENT_EXPERIMENT_TAG, run.info.run_id
                )
            else:  # others may have created one for this study at the same moment
                elected = elected_parent(self._client, self._experiment_id, uid)
                if elected is not None and elected.info.run_id != run.info.run_id:
                    self._client.delete_run(run.info.run_id)
                    run = elected
            record(self._client, run.info.run_id, self.provenance)
        self._client.update_run(run.info.run_id, status="RUNNING")
        parent_run_id = str(run.info.run_id)
        self._parent_run_id = parent_run_id
        return parent_run_id

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

    # Any: {"tags": {name: any param value}, "metrics": {name: number}}
    def record_best(self, study_summary: Mapping[str, Mapping[str, Any]], finished: int) -> None:
        """Best trial so far on the parent run: tags, and ``best_value`` against trials finished."""
        from mlflow.entities import Metric, RunTag

        tags = [RunTag(k, str(v)) for k, v in study_summary["tags"].items()]
        metrics = [
            Metric(k, float(v), now_ms(), finished) for k, v in study_summary["metrics"].items()
        ]
        self._client.log_batch(self._parent_run_id, metrics=metrics, tags=tags)

    def log_study_folder(self, folder: Path, artifact_path: str) -> str:
        """A folder (the report) as an artifact of the parent run; returns where it is."""
        run_id = self._parent_run_id
        if run_id is None:
            raise RuntimeError("the study's parent run is not open (open_study or attach)")
        self._client.log_artifacts(run_id, str(folder), artifact_path)
        return self.artifact_uri(run_id, artifact_path)

    def close_study(self, status: str = "FINISHED") -> None:
        self.stop_system_metrics()
        if self._parent_run_id:
            self._client.set_terminated(self._parent_run_id, status=status)

    # ------------------------------------------------------------------ trial runs

    def start_trial(
        self,
        number: int,
        params: Mapping[str, object],
        config_yaml: str,
        seed: int | None = None,
        trial_id: int | None = None,
    ) -> TrialRun:
        """Trial ``number``'s run ``trial-N`` (with ``seed``: its re-run ``final-N-seedK``);
        ``trial_id``: the Optuna trial's id in its storage (this attempt's own identity)."""
        run = self._client.create_run(
            self._experiment_id,
            run_name=_run_name(number, seed),
            tags=self._trial_tags(number, seed, trial_id),
        )
        trial_run = TrialRun(self._client, run.info.run_id)
        self._client.log_batch(trial_run.run_id, params=as_params(params))
        record(self._client, trial_run.run_id, self.provenance)
        self._client.log_text(trial_run.run_id, config_yaml, schema.CONFIG_ARTIFACT)
        if self.system_metrics and start_system_metrics(
            trial_run.run_id, self.uri, self.system_metrics_interval
        ):
            self._monitored = {*(self._monitored & set(monitored_runs())), trial_run.run_id}
        return trial_run

    def stop_system_metrics(self) -> None:
        """Stop the system-metrics monitors this tracker started and that are still running
        (each stops with its run: this catches a run this process did not end, one another
        worker took over)."""
        for run_id in sorted(self._monitored):
            stop_system_metrics(run_id)
        self._monitored.clear()

    def continue_curves(
        self, source_run_id: str | None, run: TrialRun, source: int, number: int
    ) -> None:
        """A promoted trial's run starts with the curves of the run it continues (their steps
        as logged), so that it reads as one curve; each run names the other."""
        from mlflow.entities import Metric, RunTag

        if not source_run_id:
            return
        recorded = self._client.get_run(source_run_id).data.metrics
        points = []
        for key in recorded:
            if key.startswith(schema.VAL_PREFIX) or key in schema.CURVE_METRICS:
                points += [
                    Metric(key, m.value, m.timestamp, m.step)
                    for m in self._client.get_metric_history(source_run_id, key)
                ]
        for start in range(0, len(points), 1000):  # MLflow's batch limit
            self._client.log_batch(run.run_id, metrics=points[start : start + 1000])
        self._client.log_batch(
            run.run_id, tags=[RunTag(schema.CONTINUES_TAG, f"trial {source} (run {source_run_id})")]
        )
        self._client.log_batch(
            source_run_id,
            tags=[RunTag(schema.CONTINUED_BY_TAG, f"trial {number} (run {run.run_id})")],
        )

    def trial_runs(
        self,
        number: int | None = None,
        status: str | None = None,
        final: bool = False,
        seed: int | None = None,
    ) -> list[RunView]:
        """The study's trial runs (``final``: its final-stage runs), of one trial number, seed,
        status."""
        role = schema.ROLE_FINAL if final else schema.ROLE_TRIAL
        query = [
            f"tags.`{schema.ROLE_TAG}` = '{role}'",
            f"tags.`{schema.PARENT_RUN_TAG}` = '{self._parent_run_id}'",
        ]
        if number is not None:
            query.append(f"tags.`{schema.NUMBER_TAG}` = '{number}'")
        if seed is not None:
            query.append(f"tags.`{schema.FINAL_SEED_TAG}` = '{seed}'")
        if status is not None:
            query.append(f"attributes.status = '{status}'")
        runs = self._client.search_runs(
            [self._experiment_id], filter_string=" and ".join(query), max_results=1000
        )
        return [_view(run) for run in runs]

    def attempt_runs(
        self,
        number: int,
        seed: int | None = None,
        trial_id: int | None = None,
        run_id: str | None = None,
    ) -> list[RunView]:
        """The run(s) of one attempt at trial ``number`` (``seed``: a final-stage run): the
        run ``run_id`` (what the Optuna trial recorded), else the runs tagged with the trial's
        ``trial_id``; runs from before that tag (no ``optuna.trial_id``) only when neither
        identifies one, as they were matched then: by number and seed."""
        runs = self.trial_runs(number, final=seed is not None, seed=seed)
        if run_id is not None:
            mine = [r for r in runs if r.run_id == run_id]
            if mine:
                return mine
        if trial_id is not None:
            mine = [r for r in runs if r.tags.get(schema.TRIAL_ID_TAG) == str(trial_id)]
            if mine or any(schema.TRIAL_ID_TAG in r.tags for r in runs):
                return mine  # another attempt's run is never this one's
        return [r for r in runs if schema.TRIAL_ID_TAG not in r.tags]

    def close_trial_run(
        self,
        number: int,
        state: str,
        status: str,
        tags: Mapping[str, object],
        seed: int | None = None,
        trial_id: int | None = None,
        run_id: str | None = None,
    ) -> None:
        """End the run of one attempt at trial ``number`` (``attempt_runs``; with ``seed``: a
        final-stage run) with the Optuna ``state`` and the MLflow ``status`` (created here if
        its process died before it had one)."""
        run_ids = [run.run_id for run in self.attempt_runs(number, seed, trial_id, run_id)]
        if not run_ids:
            run_ids = [
                self._client.create_run(
                    self._experiment_id,
                    run_name=_run_name(number, seed),
                    tags=self._trial_tags(number, seed, trial_id),
                ).info.run_id
            ]
        for run_id in run_ids:
            TrialRun(self._client, run_id).finish(state, tags, status=status)

    def log_run_metrics(self, run_id: str | None, metrics: Mapping[str, float]) -> None:
        """Metrics added to a finished run (the final stage's test scores and choice)."""
        if run_id and metrics:
            TrialRun(self._client, run_id).log_metrics(metrics, step=0)

    def has_checkpoint(self, run_id: str) -> bool:
        paths = {str(a.path) for a in self._client.list_artifacts(run_id)}
        return schema.CHECKPOINT_ARTIFACT in paths

    def delete_checkpoint(self, run_id: str, reason: str) -> None:
        """Remove a run's ``checkpoint`` artifact (bounded disk); the run keeps a tag saying why."""
        from mlflow.entities import RunTag
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        try:
            uri = self._client.get_run(run_id).info.artifact_uri
            get_artifact_repository(uri, tracking_uri=self.uri).delete_artifacts(
                schema.CHECKPOINT_ARTIFACT
            )
        except Exception as exc:  # a store that cannot delete keeps it: say so, go on
            log.warning(
                "could not remove the checkpoint of MLflow run %s: %s", run_id, first_line(exc)
            )
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
        uri = str(self._client.get_run(run_id).info.artifact_uri)
        return f"{uri}/{path}" if path else uri

    def register_model(
        self, run_id: str, folder: Path, name: str, path: str = schema.MODEL_ARTIFACT
    ) -> str:
        """Log ``folder`` to the run (at ``path``: a new one per version, which then never
        changes) and register it as a new version of the registered model ``name``; returns
        "model 'NAME' version N"."""
        from mlflow.exceptions import MlflowException

        self._client.log_artifacts(run_id, str(folder), path)
        try:
            self._client.create_registered_model(name, description=f"Exports of study '{name}'")
        except MlflowException as exc:
            if "already exists" not in str(exc).lower():
                raise
        version = self._client.create_model_version(
            name, self.artifact_uri(run_id, path), run_id=run_id
        )
        return f"model '{name}' version {version.version}"

    def _parent_tag(self) -> dict[str, str]:
        return {} if self._parent_run_id is None else {schema.PARENT_RUN_TAG: self._parent_run_id}

    # ------------------------------------------------------------------ helpers

    def _trial_tags(
        self, number: int, seed: int | None = None, trial_id: int | None = None
    ) -> dict[str, str]:
        final = (
            {}
            if seed is None
            else {schema.ROLE_TAG: schema.ROLE_FINAL, schema.FINAL_SEED_TAG: str(seed)}
        )
        attempt = {} if trial_id is None else {schema.TRIAL_ID_TAG: str(trial_id)}
        return {
            **self._parent_tag(),
            schema.ROLE_TAG: schema.ROLE_TRIAL,
            schema.STUDY_NAME_TAG: self.experiment_name,
            schema.NUMBER_TAG: str(number),
            schema.STATE_TAG: "RUNNING",
            **final,
            **attempt,
        }


def _run_name(number: int, seed: int | None) -> str:
    return f"trial-{number}" if seed is None else f"final-{number}-seed{seed}"


def _view(run: Run) -> RunView:
    return RunView(
        run.info.run_id,
        dict(run.data.params),
        dict(run.data.metrics),
        dict(run.data.tags),
        run.info.artifact_uri,
    )
