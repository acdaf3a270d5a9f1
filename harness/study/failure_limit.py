"""Stop a study that is clearly broken instead of failing trial after trial all night."""

from __future__ import annotations

from typing import TYPE_CHECKING

from optuna.trial import FrozenTrial, TrialState

from harness.records import schema, trials

if TYPE_CHECKING:
    import optuna


class FailureLimit:
    """Optuna callback: stops the study after ``consecutive`` failed trials in a row, or once
    more than ``rate`` of this run's trials failed (judged from ``min_trials`` trials on).

    Interrupted trials (a stopped or killed process) do not count: they say nothing about the
    study. :attr:`reason` says why the study was stopped (None while it was not).
    """

    def __init__(self, consecutive: int | None, rate: float | None, min_trials: int) -> None:
        self.consecutive = consecutive
        self.rate = rate
        self.min_trials = min_trials
        self.ended = 0
        self.failed = 0
        self.streak: list[str] = []  # the errors of the current run of failures
        self.reason: str | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
            return
        if trial.state == TrialState.FAIL and trial.user_attrs.get(schema.INTERRUPTED_ATTR):
            return
        self.ended += 1
        if trial.state != TrialState.FAIL:
            self.streak = []
            return
        self.failed += 1
        self.streak.append(trials.failure_reason(trial).splitlines()[0])
        if self.consecutive is not None and len(self.streak) >= self.consecutive:
            self._stop(
                study,
                f"{len(self.streak)} trials in a row failed "
                f"(study.failure_limit.consecutive={self.consecutive})",
            )
        elif (
            self.rate is not None
            and self.ended >= self.min_trials
            and self.failed / self.ended > self.rate
        ):
            self._stop(
                study,
                f"{self.failed} of this run's {self.ended} trials failed "
                f"(more than study.failure_limit.rate={self.rate})",
            )

    def _stop(self, study: optuna.Study, what: str) -> None:
        errors = self.streak
        kinds = {error.split(":", 1)[0] for error in errors}
        if len(set(errors)) == 1 and len(errors) > 1:
            cause = f"every one with {errors[0]}"
        elif len(kinds) == 1 and len(errors) > 1:
            cause = f"every one with a {kinds.pop()}, the last: {errors[-1]}"
        else:
            cause = f"the last with {errors[-1]}"
        self.reason = (
            f"study stopped: {what}, {cause}. Fix the cause, then rerun the same "
            "command to resume (failed trials do not count towards study.n_trials)"
        )
        study.stop()
