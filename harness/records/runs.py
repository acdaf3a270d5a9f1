"""One MLflow run of a study, as the harness writes it: a trial's child run, and read-only views.

Only :mod:`harness.records` talks to MLflow: these objects wrap ``MlflowClient`` calls so that
no other module needs one. A trial's run may carry MLflow's own system-metrics monitor
(:func:`start_system_metrics`): it stops when the run ends (:meth:`TrialRun.finish`), whichever
way it ends.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.base import faults
from harness.base.errors import first_line
from harness.base.secrets import mask
from harness.records import schema

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Param
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

log = logging.getLogger(__name__)


@dataclass
class RunView:
    """What a run recorded (read-only): params, latest metrics, tags."""

    run_id: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifact_uri: str = ""


class TrialRun:
    """The child run of one trial."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self._client = client
        self.run_id = run_id
        self.ended = False

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = now_ms()
        self._client.log_batch(
            self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()]
        )

    def log_checkpoint(self, folder: Path) -> None:
        """The checkpoint folder as the run's ``checkpoint`` artifact, file by file."""
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                relative = path.parent.relative_to(folder)
                where = (
                    schema.CHECKPOINT_ARTIFACT
                    if relative == Path(".")
                    else f"{schema.CHECKPOINT_ARTIFACT}/{relative}"
                )
                self._client.log_artifact(self.run_id, str(path), where)
                faults.hit("artifact")

    def mark_enqueued(self, user_attrs: Mapping[str, object]) -> None:
        """A queued trial's run (study.enqueue, study.warm_start): where its params came from."""
        if schema.ENQUEUED_ATTR in user_attrs:
            self._client.set_tag(
                self.run_id, schema.ENQUEUED_TAG, mask(str(user_attrs[schema.ENQUEUED_ATTR]))[:5000]
            )

    def log_traceback(self, text: str) -> None:
        """A failed trial's traceback, as the run's ``traceback.txt`` (best effort)."""
        try:
            self._client.log_text(self.run_id, text, schema.TRACEBACK_ARTIFACT)
        except Exception as exc:
            log.warning("could not log the traceback: %s", first_line(exc))

    def finish(
        self, state: str, tags: Mapping[str, object] | None = None, status: str | None = None
    ) -> None:
        """Record the trial's final Optuna state and end the run (``status``: the MLflow status,
        by default the one matching ``state``)."""
        from mlflow.entities import RunTag

        stop_system_metrics(self.run_id)  # its last samples go in while the run is RUNNING
        all_tags = {schema.STATE_TAG: state, **(tags or {})}
        self._client.log_batch(
            self.run_id, tags=[RunTag(k, mask(str(v))[:5000]) for k, v in all_tags.items()]
        )
        self._client.set_terminated(self.run_id, status=status or schema.RUN_STATUS[state])
        self.ended = True


def as_params(params: Mapping[str, object]) -> list[Param]:
    """MLflow params: strings as they are, anything else as JSON (cut to MLflow's limit)."""
    from mlflow.entities import Param

    def text(value: object) -> str:
        return value if isinstance(value, str) else json.dumps(value)

    return [Param(str(k), text(v)[:6000]) for k, v in params.items()]


def now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------------- system metrics
# MLflow starts its system-metrics monitor only for runs of its fluent API (mlflow.start_run
# with log_system_metrics); the harness creates its runs through the client, so it starts
# MLflow's monitor itself, one per trial run, writing to the tracker's own URI (not the
# process-wide mlflow.set_tracking_uri: nothing of a user's global MLflow state changes).

_monitors: dict[str, SystemMetricsMonitor] = {}  # run id -> its running monitor (this process)
_monitors_lock = threading.Lock()
_warned: set[str] = set()  # what this process has already warned about (once each)


def start_system_metrics(run_id: str, tracking_uri: str, interval: float) -> bool:
    """MLflow's system-metrics monitor on run ``run_id``: CPU, memory, disk and network (psutil),
    each GPU's utilisation, memory and power (nvidia-ml-py, where NVML finds a GPU), as
    ``system/...`` metrics every ``interval`` seconds (MLflow's environment variable
    ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` overrides it). False, with one warning per
    process, where it cannot start (no psutil): the trial runs on without them."""
    try:
        importlib.import_module("psutil")  # MLflow's CPU monitor needs it
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
    except ImportError as exc:
        _warn_once(
            "import",
            "system metrics are not recorded (%s): pip install psutil, "
            "or set tracking.system_metrics=false",
            first_line(exc),
        )
        return False
    try:
        monitor = SystemMetricsMonitor(
            run_id, sampling_interval=interval, samples_before_logging=1, tracking_uri=tracking_uri
        )
        monitor.start()
    except Exception as exc:  # the records of the trial matter more than its system metrics
        _warn_once("start", "system metrics are not recorded: %s", first_line(exc))
        return False
    with _monitors_lock:
        previous = _monitors.pop(run_id, None)
        _monitors[run_id] = monitor
    if previous is not None:
        _finish(run_id, previous)
    return True


def stop_system_metrics(run_id: str) -> None:
    """Stop run ``run_id``'s monitor (if this process started one): its thread ends, and what
    it sampled since its last record is recorded, with one last sample, so that a trial shorter
    than one interval still has its point and every run has the same ``system/`` names."""
    with _monitors_lock:
        monitor = _monitors.pop(run_id, None)
    if monitor is not None:
        _finish(run_id, monitor)


def monitored_runs() -> list[str]:
    """The runs whose monitors this process is running."""
    with _monitors_lock:
        return list(_monitors)


def _finish(run_id: str, monitor: SystemMetricsMonitor) -> None:
    try:
        monitor.finish()  # sets its stop event, joins its thread, flushes what it queued
        monitor.collect_metrics()
        monitor.publish_metrics(monitor.aggregate_metrics())
        monitor.mlflow_logger.flush()
    except Exception as exc:
        log.warning(
            "could not record the last system metrics of MLflow run %s: %s", run_id, first_line(exc)
        )


def _warn_once(key: str, message: str, *args: object) -> None:
    with _monitors_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning(message, *args)
