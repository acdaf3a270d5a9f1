"""Test helpers: start a child process as a terminal starts a command."""

from __future__ import annotations

import signal


def as_foreground_job() -> None:
    """``preexec_fn`` for a child the test interrupts: SIGINT and SIGHUP at their defaults.

    A shell starts a background job (``make test &``, ``nohup``) with SIGINT (and SIGHUP)
    ignored, a child inherits that, and the sweep keeps a signal ignored since its start, as
    Python does with SIGINT: without this, a test that sends Ctrl-C would wait forever.
    """
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
