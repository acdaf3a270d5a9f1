"""Ctrl-C, SIGTERM and SIGHUP: stop within seconds, as an exception the study can record.

Inside :func:`raise_on_signals`, SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` (a
``KeyboardInterrupt``) in the main thread, wherever it is: the running trial is recorded as
interrupted and the process exits with 128 + the signal number. A second SIGINT or SIGTERM while
that record is being written exits at once (the next run recovers the trial like a ``kill -9``);
a repeated SIGHUP does not: a worker gets one from the kernel for each thread of its dying
launcher, and must finish its record. A signal the process was started ignoring (``nohup``)
stays ignored.

Inside :func:`deferred` (a trial's training with ``study.resume_trials``), the first signal
raises nothing: it waits (:func:`pending`) for the training loop to stop after the current
optimizer step and save the trial's full training state, which the next run continues; the
trial is then recorded as interrupted and the sweep stops as above. A second signal still exits
at once.

In a submitit job (``hydra/launcher=submitit_slurm``, ``submitit_local``) the signal submitit
sends before a job's time limit (:func:`preempt_signal`: SIGUSR2 unless
``SUBMITIT_PREEMPT_SIGNAL`` says otherwise) is one of them: the trial is saved and recorded the
same way, and once the sweep has stopped, submitit's own handler runs, which checkpoints the job
and requeues it (the requeued job runs the same command, and so continues the trial).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TypeAlias

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_received: list[int] = []  # the signals received inside raise_on_signals
_deferred: list[bool] = []  # non-empty inside deferred(): the first signal waits for a save


class Interrupted(KeyboardInterrupt):
    """The sweep was stopped by a signal."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def check() -> None:
    """Raise :class:`Interrupted` again if a signal has arrived.

    A signal handler's exception is raised wherever the main thread happens to be; if that is
    a finalizer run by the garbage collector (a ``__del__``, a weakref callback), Python prints
    "Exception ignored" and drops it. The training loop and the trial loop call this, so a
    dropped interruption still stops the sweep at the next step.
    """
    if _received and not _deferred:
        raise Interrupted(_received[0])


def pending() -> int | None:
    """The signal that arrived (inside :func:`deferred`: the one waiting for the running
    trial's state to be saved); None while none has."""
    return _received[0] if _received else None


@contextmanager
def deferred() -> Iterator[None]:
    """Inside, the first signal raises nothing (not even in :func:`check`): the training loop
    polls :func:`pending`, stops after its current step and saves its state (see the module).
    A signal still pending when the block ends raises at the next :func:`check`."""
    _deferred.append(True)
    try:
        yield
    finally:
        _deferred.pop()


def preempt_signal() -> int | None:
    """In a submitit job, the signal submitit sends before the job's time limit or when it is
    preempted (``SUBMITIT_PREEMPT_SIGNAL``, SIGUSR2 by default: what ``sbatch --signal=USR2@…``
    sends); None outside submitit."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    found = getattr(signal, f"SIG{name}", None)
    return int(found) if found is not None else None


# what signal.signal installs and returns: a function, SIG_DFL / SIG_IGN, or None (a handler
# not set from Python)
SignalHandler: TypeAlias = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


def handle(signals: tuple[int, ...], handler: SignalHandler) -> dict[int, SignalHandler]:
    """Install ``handler`` for ``signals``, except those ignored since the start (as ``nohup``
    ignores SIGHUP): they stay ignored. Returns the handlers replaced, to restore later."""
    return {
        sig: signal.signal(sig, handler)
        for sig in signals
        if signal.getsignal(sig) is not signal.SIG_IGN
    }


@contextmanager
def raise_on_signals() -> Iterator[None]:
    """SIGINT / SIGTERM / SIGHUP (and, in a submitit job, its :func:`preempt_signal`) raise
    :class:`Interrupted` while the block runs (main thread only; inside :func:`deferred`, the
    first waits for the trial's state to be saved). Submitit's signal is passed on to the
    handler it replaced once the block has ended (see the module)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()

    def handler(signum: int, frame: object) -> None:
        if _received:  # the second one: stop now, recovery happens on the next run
            if signum == signal.SIGHUP:  # one per thread of a dying launcher: not a second
                return
            with contextlib.suppress(OSError):  # nobody may read the output any more
                print(
                    f"\n{signal.Signals(signum).name} again: exiting now",
                    file=sys.stderr,
                    flush=True,
                )
            os._exit(128 + signum)
        _received.append(signum)
        if _deferred:
            with contextlib.suppress(OSError):
                print(
                    f"\n{signal.Signals(signum).name}: saving the running trial's training state "
                    "after its current step (the same signal again: exit now)",
                    file=sys.stderr,
                    flush=True,
                )
            return
        raise Interrupted(signum)

    preempt = preempt_signal()
    previous = handle(SIGNALS + (() if preempt is None else (preempt,)), handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        got = pending()
        _received.clear()
        chained = previous.get(preempt) if preempt is not None else None
        if got is not None and got == preempt and callable(chained):
            # submitit's: checkpoint the job and requeue it (it exits with SystemExit)
            chained(got, None)
