"""Trials a stopped process left behind: failed in Optuna, closed in MLflow, queued again.

A sweep can stop at any moment: ``kill -9``, a lost machine, an out-of-memory kill, Ctrl-C.
Every running trial has an Optuna heartbeat (``RDBStorage(heartbeat_interval, grace_period)``);
a trial whose heartbeat stops is failed by the next worker that looks (Optuna's
``fail_stale_trials``, run before every trial and when a sweep starts), and :class:`Recovery`,
its stale-trial callback, then

- ends the trial's MLflow run as FAILED with the reason (creating the run if the process died
  before it had one), and removes any checkpoint it had half uploaded,
- removes the trial's half-written local checkpoint (and paused state),
- queues the same parameters again with Optuna's ``RetryHeartbeatStaleTrialCallback`` (at most
  ``max_retry`` times per original trial). A promoted trial (one continuing a paused trial's
  state) is queued again by the promotion scheduler instead, from the same state.

With ``study.resume_trials`` a signal saves the running trial's training state before it ends
interrupted (``harness.interrupted_state``; :mod:`harness.study.objective`). Such a trial is
not retried from step 0: :func:`queue_continuations` queues a *continuation*, a new trial with
the same parameters and ``harness.continues`` = its number, which reports its evaluations,
continues its MLflow curves and trains on from the state, the way a promoted trial continues a
paused one (one mechanism). The continuation stands for the configuration in
``study.n_trials``'s count (the interrupted trial did not count). One that stops again with a
state of its own is continued from that state in turn; one that stops without saving (killed,
or a signal outside training) is queued again from the same state, ``max_retry`` times.

On one machine nobody needs to wait for the grace period: a running trial whose process (same
host, same boot) no longer exists is failed at once when the next sweep starts.
"""

from __future__ import annotations

import copy
import datetime
import logging
import os
import socket
import warnings
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from harness.records import schema, trials
from harness.study.lock import study_lock

if TYPE_CHECKING:
    from harness.records.tracker import Tracker
    from harness.study.paused import PausedStates
    from harness.study.retention import StudyCheckpoints

log = logging.getLogger(__name__)
# a continuation in these states has taken its source's configuration on
_TAKEN = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)


def queue_continuations(study: optuna.Study, states: PausedStates, max_retry: int | None) -> int:
    """Queue the continuation of each trial interrupted with its training state saved that has
    none running, queued or ended (see the module); the state a continuation supersedes (the
    one its interrupted trial continued) is removed. Under the study's promotion lock, so that
    whichever workers look, each is queued once. Returns how many were queued."""
    queued = 0
    with study_lock(study._storage, study.study_name, "promotion"):
        every = study.get_trials(deepcopy=False)
        by_number = {t.number: t for t in every}
        later = trials.continuations(every)
        for trial in every:
            mark = trials.interrupted_state(trial)
            if mark is None or trial.state != TrialState.FAIL:
                continue
            attempts = later.get(trial.number, [])
            if any(a.state in _TAKEN or trials.interrupted_state(a) for a in attempts):
                continue  # taken on, or superseded by a later state
            if attempts and (
                schema.INTERRUPTED_ATTR not in attempts[-1].user_attrs  # it raised: no retry
                or (max_retry is not None and len(attempts) > max_retry)
            ):
                continue
            if not states.path(trial.number).is_dir():
                log.warning(
                    "trial %d's saved training state is not in %s: it cannot be continued "
                    "(with several machines, study.output_dir must be a folder they share)",
                    trial.number,
                    states.path(trial.number),
                )
                continue
            attrs: dict[str, object] = {
                schema.CONTINUES_ATTR: trial.number,
                schema.CONFIG_ATTR: trials.config_of(trial),
            }
            for key in (schema.TO_END_ATTR, schema.ENQUEUED_ATTR):
                if key in trial.user_attrs:  # a promotion to the end, the recipe: stay so
                    attrs[key] = trial.user_attrs[key]
            study.enqueue_trial(dict(trial.params), user_attrs=attrs)
            queued += 1
            source = trial.user_attrs.get(schema.CONTINUES_ATTR)
            if source is not None and int(source) in by_number:
                states.remove(int(source))  # superseded by this trial's later state
            log.info(
                "trial %d (interrupted at step %s, evaluation %s) queued to continue from "
                "its saved training state%s",
                trial.number,
                mark.get("step"),
                mark.get("evaluation"),
                f" (retry {len(attempts)})" if attempts else "",
            )
    return queued


def this_worker() -> dict[str, str | int]:
    """Identifies this process among all workers of a study (host, boot, pid)."""
    host, boot = _machine()
    return {"host": host, "boot": boot, "pid": os.getpid()}


@cache
def _machine() -> tuple[str, str]:
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            boot = handle.read().strip()
    except OSError:  # not Linux: the host name alone
        boot = ""
    return socket.gethostname(), boot


def process_is_gone(worker: object) -> bool:
    """True only when ``worker`` ran on this machine (this boot) and its process has ended."""
    me = this_worker()
    if not isinstance(worker, dict) or (worker.get("host"), worker.get("boot")) != (
        me["host"],
        me["boot"],
    ):
        return False
    pid = worker.get("pid")
    if not isinstance(pid, int) or pid == me["pid"]:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


@dataclass
class Recovery:
    """Fails, closes and retries trials whose process stopped (see the module docstring)."""

    tracker: Tracker
    store: StudyCheckpoints
    max_retry: int | None
    grace_period: int
    final_store: StudyCheckpoints | None = None  # the final stage's runs' checkpoints
    paused: PausedStates | None = None  # paused trials' training states (promotion scheduler)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna's stale-trial callback: ``trial`` is already FAIL in the storage."""
        worker = trial.user_attrs.get(schema.WORKER_ATTR) or {}
        where = f" ({worker.get('host')}, pid {worker.get('pid')})" if worker else ""
        self._close(
            study,
            trial,
            trial.user_attrs.get(schema.INTERRUPTED_ATTR)
            or (f"its worker{where} stopped: no heartbeat for more than {self.grace_period} s"),
            status="FAILED",
        )

    def recover(self, study: optuna.Study) -> None:
        """When a sweep starts: fail what dead processes left running, close MLflow runs that
        are still open for finished trials, remove half-written checkpoints."""

        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = trial.user_attrs.get(schema.WORKER_ATTR) or {}
            if process_is_gone(worker):
                self.fail(
                    study,
                    trial,
                    f"its process (pid {worker['pid']}) is gone: killed or "
                    "crashed while the trial ran",
                )
        self.check_stale(study)
        self._close_orphan_runs(study)
        if not trials.is_final(study):  # the final stage removes its own when it chooses
            self.store.remove_unkept(study)
            if self.paused is not None:  # interrupted trials with a saved state go on
                self.paused.clear_partials(study)
                queue_continuations(study, self.paused, self.max_retry)

    def check_stale(self, study: optuna.Study) -> None:
        """Fail (and so recover) the trials whose heartbeat is older than the grace period, and
        those that never started: RUNNING for longer than the grace period without a worker
        (a process stopped inside Optuna's ``ask()``, before its first heartbeat, or another
        tool asked for a trial). Optuna's own check skips trials without a heartbeat, and one
        left RUNNING would keep every later run waiting for it."""

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        now = datetime.datetime.now()
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            started = trial.datetime_start
            if (
                schema.WORKER_ATTR not in trial.user_attrs
                and started is not None
                and (now - started).total_seconds() > self.grace_period
            ):
                self.fail(
                    study,
                    trial,
                    f"it never started: RUNNING since {started:%H:%M:%S} "
                    "without a worker or a heartbeat",
                )

    def interrupted(self, study: optuna.Study, number: int | None, reason: str) -> None:
        """After Ctrl-C / SIGTERM: the trial this process was running (``number``, which Optuna
        may have failed already) and any other trial it left RUNNING end as FAIL, interrupted,
        with their parameters queued again."""

        me = this_worker()
        for trial in study.get_trials(deepcopy=False):
            if trial.state == TrialState.RUNNING and (
                trial.number == number or trial.user_attrs.get(schema.WORKER_ATTR) == me
            ):
                self.fail(study, trial, reason, status="KILLED")
            elif trial.state == TrialState.FAIL and trial.number == number:
                self._close(study, trial, reason, status="KILLED")

    def fail(
        self, study: optuna.Study, trial: FrozenTrial, reason: str, status: str = "FAILED"
    ) -> None:
        """Fail a RUNNING trial with ``reason`` (unless another worker got there first); its
        MLflow run ends with ``status``: KILLED when stopped by a signal, FAILED when its worker
        died."""

        storage = study._storage
        try:
            storage.set_trial_user_attr(trial._trial_id, schema.INTERRUPTED_ATTR, reason)
            if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                return
        except UpdateFinishedTrialError:
            return
        self._close(study, storage.get_trial(trial._trial_id), reason, status)

    def _close(self, study: optuna.Study, trial: FrozenTrial, reason: str, status: str) -> None:
        saved = (
            trials.interrupted_state(trial) is not None
            and self.paused is not None
            and self.paused.path(trial.number).is_dir()
        )
        log.warning(
            "trial %d stopped (%s): recorded as failed, %s",
            trial.number,
            reason.removeprefix("interrupted by "),
            "its training state saved: the next run continues it"
            if saved
            else "its parameters queued again",
        )
        # a final-stage run (the companion study's trial) is closed as itself, never as the
        # search's trial of the same number; the final stage queues it again itself
        final = trials.is_final(study)
        number, seed = trials.final_key(trial) if final else (trial.number, None)
        store = self.final_store if final else self.store
        if store is not None:
            store.discard(trial.number)
        if self.paused is not None and not final:
            self.paused.discard(trial.number)
        # exactly this attempt's run: a final-stage run retried shares its number and seed
        trial_id, run_id = trial._trial_id, trial.user_attrs.get(schema.RUN_ID_ATTR)
        try:
            for run in self.tracker.attempt_runs(number, seed, trial_id, run_id):
                if self.tracker.has_checkpoint(run.run_id):
                    self.tracker.delete_checkpoint(run.run_id, "removed: trial interrupted")
            self.tracker.close_trial_run(
                number,
                "FAIL",
                status,
                {schema.ERROR_TAG: f"interrupted: {reason}"},
                seed=seed,
                trial_id=trial_id,
                run_id=run_id,
            )
        except Exception as exc:  # Optuna's record is the one that counts: go on
            log.warning("could not close the MLflow run of trial %d: %s", trial.number, exc)
        if final:  # queued again by the final stage
            return
        if saved or trials.is_continuation(trial):
            # continued from its state (or, a continuation stopped without one, from the state
            # it continued); a promoted trial's paused source is queued by the promotion
            # scheduler
            if self.paused is not None:
                queue_continuations(study, self.paused, self.max_retry)
            return
        clean = copy.deepcopy(trial)
        # the retry is a new trial (no worker, no run id, no reason), queued as the trial was
        clean.user_attrs = {k: v for k, v in trial.user_attrs.items() if k == schema.ENQUEUED_ATTR}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            RetryHeartbeatStaleTrialCallback(max_retry=self.max_retry)(study, clean)

    def _close_orphan_runs(self, study: optuna.Study) -> None:
        """Trial runs still RUNNING in MLflow whose Optuna trial has ended (a process killed
        between the two records) end now with the trial's state."""

        final = trials.is_final(study)
        mine = [
            t
            for t in study.get_trials(deepcopy=False)
            if not final or schema.FINAL_TRIAL_ATTR in t.user_attrs
        ]
        by_run = {
            t.user_attrs[schema.RUN_ID_ATTR]: t for t in mine if schema.RUN_ID_ATTR in t.user_attrs
        }
        by_id = {str(t._trial_id): t for t in mine}
        # runs from before the trial-id tag: by number and seed (the latest attempt)
        by_key: dict[tuple[int, int | None], FrozenTrial] = {
            (trials.final_key(t) if final else (t.number, None)): t for t in mine
        }
        for run in self.tracker.trial_runs(status="RUNNING", final=final):
            number = int(run.tags.get(schema.NUMBER_TAG, -1))
            seed = int(run.tags[schema.FINAL_SEED_TAG]) if final else None
            trial = by_run.get(run.run_id) or (
                by_id.get(run.tags[schema.TRIAL_ID_TAG])
                if schema.TRIAL_ID_TAG in run.tags
                else by_key.get((number, seed))
            )
            if trial is None or trial.state == TrialState.RUNNING:
                continue
            state, tags = trial.state.name, {}
            status = schema.RUN_STATUS.get(state, "FAILED")
            if state == "FAIL":
                interrupted = str(trial.user_attrs.get(schema.INTERRUPTED_ATTR) or "")
                status = "KILLED" if interrupted.startswith("interrupted by") else "FAILED"
                tags = {schema.ERROR_TAG: trials.failure_reason(trial)}
            self.tracker.close_trial_run(number, state, status, tags, seed=seed, run_id=run.run_id)
