"""MLflow keeps the same checkpoints as the study's folder (``checkpoints.mlflow=kept``)."""

from __future__ import annotations

from typing import Any

from harness.records import schema


def drop_mlflow_checkpoints(
    study: Any, tracker: Any, store: Any, numbers: list[int] | None = None
) -> None:
    """Remove from their MLflow runs the checkpoints of trials ``numbers`` (None: of every
    complete trial that is not kept, as when a study resumes with a lower
    ``checkpoints.keep``, or after a process was killed between a trial's end and this)."""
    kept = store.kept(study)
    for trial in study.get_trials(deepcopy=False):
        run_id = trial.user_attrs.get(schema.RUN_ID_ATTR)
        if (
            not run_id
            or trial.number in kept
            or trial.state.name != "COMPLETE"
            or (numbers is not None and trial.number not in numbers)
        ):
            continue
        if numbers is not None or tracker.has_checkpoint(run_id):
            tracker.delete_checkpoint(run_id, f"removed: not among the best {store.keep} trials")
