"""A running trial's own heartbeat, and the news that another worker failed it.

Optuna's heartbeat thread stops at the first storage error (a database restart, a dropped
connection), and the trial then looks dead to every other worker although it is training. A
trial also looks dead while its process is suspended (SIGSTOP, a laptop lid) past
``study.grace_period``; another worker then fails it and queues its parameters again. This
watch sends heartbeats too (through the storage's ``record_heartbeat``), carries on through
errors, and notices when the trial is no longer RUNNING, so that the trial stops instead of
recording a result over the other worker's record.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)


class TrialTakenOver(RuntimeError):
    """The trial was failed by another worker (declared stale) while this process ran it."""


class TrialWatch:
    """Heartbeats for ``trial`` every ``interval`` seconds in a thread (:meth:`start` …
    :meth:`stop`); :attr:`taken_over` once the storage no longer has it RUNNING."""

    def __init__(self, trial: optuna.Trial, interval: float) -> None:
        self.storage = trial.study._storage
        self.trial_id = trial._trial_id
        self.interval = max(0.2, float(interval))
        self.taken_over = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, daemon=True, name=f"harness-watch-{trial.number}"
        )
        self._warned = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 5)

    def check(self) -> bool:
        """Ask the storage now: has another worker ended the trial?"""
        try:
            self.taken_over = self.storage.get_trial(self.trial_id).state.is_finished()
        except Exception as exc:  # transient: the next beat asks again
            self._warn(exc)
        return self.taken_over

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if hasattr(self.storage, "record_heartbeat"):
                    self.storage.record_heartbeat(self.trial_id)
            except Exception as exc:  # the database is back soon, or not: keep trying
                self._warn(exc)
            if self.check():
                return

    def _warn(self, exc: Exception) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "trial heartbeat: the storage did not answer (%s); retrying",
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )
