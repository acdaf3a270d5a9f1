"""Which trials' checkpoints a study keeps: the best ``checkpoints.keep`` trials', always the
best trial's, the best of each method in a methods study, and the members of the ensemble it
ships; ``best`` points at the best trial's checkpoint, or at what the final stage chose. MLflow
keeps the same ones (``checkpoints.mlflow=kept``).

The folder itself (write, commit, discard, remove, link) is :class:`CheckpointStore`'s, which
knows no study; :class:`StudyCheckpoints` adds the study's choice of what stays.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from optuna.trial import TrialState

from harness.records import schema, trials
from harness.train.checkpoints import CheckpointStore

if TYPE_CHECKING:
    import optuna
    from omegaconf import DictConfig

    from harness.records.tracker import Tracker


class StudyCheckpoints(CheckpointStore):
    """A study's local checkpoints, bounded: the best ``keep`` trials' (and always the
    best's)."""

    @classmethod
    def from_config(cls, cfg: DictConfig) -> StudyCheckpoints:
        """The store of the study ``cfg`` describes (``study.output_dir``, ``checkpoints``)."""
        return cls(str(cfg.study.output_dir), cfg.checkpoints.keep)

    def __init__(self, root: str | Path, keep: int | None, label: str = "trial") -> None:
        super().__init__(root, label)
        self.keep = keep  # None: keep every completed trial's checkpoint

    def wanted(self, study: optuna.Study, value: float, method: str | None = None) -> bool:
        """Would a trial scoring ``value`` (with ``method``, in a methods study) be among the
        kept ones? A checkpoint that would be removed at once is not written at all."""
        if self.keep is None:
            return True
        sign = 1 if trials.direction(study) == "maximize" else -1
        ranking = trials.ranked(study)
        if len(ranking) < self.keep or sign * value > sign * trials.study_value(
            ranking[self.keep - 1]
        ):
            return True
        if method is None:
            return False
        best = trials.best_per_method(study).get(method)
        return best is None or sign * value > sign * trials.study_value(best)

    def kept(self, study: optuna.Study) -> set[int]:
        """Trial numbers whose checkpoints stay: the best ``keep``, the best overall, the best
        of each method in a methods study, and the members of the shipped ensemble."""
        ranking = trials.ranked(study)
        numbers = {t.number for t in (ranking if self.keep is None else ranking[: self.keep])}
        best = trials.best_trial(study)
        if best is not None:
            numbers.add(best.number)
        numbers.update(t.number for t in trials.best_per_method(study).values())
        final = study.user_attrs.get(schema.FINAL_ATTR) or {}
        for member in (final.get("ensemble") or {}).get("members", []):
            number = self.number_of(self.root / member["checkpoint"])
            if number is not None:
                numbers.add(number)
        return numbers

    def remove_unkept(self, study: optuna.Study) -> list[int]:
        """Remove the checkpoints of finished trials that are not kept; point ``best`` at the
        final stage's choice, else at the best trial's. Returns the trial numbers whose
        checkpoints were removed."""
        keep = self.kept(study)
        finished = {
            t.number
            for t in study.get_trials(deepcopy=False)
            if t.state not in (TrialState.RUNNING, TrialState.WAITING)
        }
        removed = [n for n in self.committed() if n in finished and n not in keep]
        for number in removed:
            self.remove(number)
        for number in self.partials():  # left by a killed process
            if number in finished:
                self.discard(number)
        final = study.user_attrs.get(schema.FINAL_ATTR) or {}
        shipped = (
            (final.get("ensemble") or {}).get("folder")
            or (final.get("soup") or {}).get("checkpoint")
            or final.get("checkpoint", "-")
        )
        chosen = self.root / str(shipped)
        best = trials.best_trial(study)
        if chosen.is_dir():  # the final stage's choice stands (until it chooses again)
            self.link_best(chosen.relative_to(self.root))
        elif best is not None and self.path(best.number).is_dir():
            self.link_best(self.path(best.number).relative_to(self.root))
        return removed


def drop_mlflow_checkpoints(
    study: optuna.Study,
    tracker: Tracker,
    store: StudyCheckpoints,
    numbers: list[int] | None = None,
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
