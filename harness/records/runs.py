"""One MLflow run of a study, as the harness writes it: a trial's child run, and read-only views.

Only :mod:`harness.records` talks to MLflow: these objects wrap ``MlflowClient`` calls so that
no other module needs one.
"""

from __future__ import annotations

import json
import logging
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
