"""Ctrl-C, SIGTERM and SIGHUP: stop within seconds, as an exception the study can record.

Inside :func:`raise_on_signals`, SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` (a
``KeyboardInterrupt``) in the main thread, wherever it is: the running trial is recorded as
interrupted and the process exits with 128 + the signal number. A second SIGINT or SIGTERM while
that record is being written exits at once (the next run recovers the trial like a ``kill -9``);
a repeated SIGHUP does not: a worker gets one from the kernel for each thread of its dying
launcher, and must finish its record. A signal the process was started ignoring (``nohup``)
stays ignored.
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
    if _received:
        raise Interrupted(_received[0])


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
    """SIGINT / SIGTERM / SIGHUP raise :class:`Interrupted` while the block runs (main thread
    only)."""
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
        raise Interrupted(signum)

    previous = handle(SIGNALS, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        _received.clear()
