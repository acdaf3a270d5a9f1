"""Signals in a real process: what stops a sweep, what a repeated signal does, nohup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers.processes import as_foreground_job

pytestmark = pytest.mark.integration  # real signals to child processes

ROOT = Path(__file__).resolve().parents[2]

# Inside raise_on_signals: the signals of argv[1] arrive one after another (each a real
# os.kill); the first raises Interrupted, whose handler "records" for 1 s, as a trial does.
CHILD = textwrap.dedent("""
    import os, signal, sys, time
    from harness.base.interrupts import Interrupted, raise_on_signals
    names = sys.argv[1].split(",")
    with raise_on_signals():
        try:
            for name in names:
                os.kill(os.getpid(), getattr(signal, name))
                time.sleep(0.05)
            time.sleep(0.5)
            print("not interrupted", flush=True)
        except Interrupted as exc:
            rest = names[1:]
            for name in rest:  # more signals while the record is written
                os.kill(os.getpid(), getattr(signal, name))
            time.sleep(1.0)
            print(f"recorded: {exc}", flush=True)
            sys.exit(exc.exit_code)
""")


def run_child(signals: str, ignore_hangup: bool = False) -> subprocess.CompletedProcess:
    def under_nohup() -> None:
        as_foreground_job()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    return subprocess.run(
        [sys.executable, "-c", CHILD, signals],
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=60,
        preexec_fn=under_nohup if ignore_hangup else as_foreground_job,
    )


def test_repeated_hangups_count_once_and_the_record_is_finished():
    """A worker's dying launcher sends SIGHUP once per launcher thread: one stop, recorded."""
    done = run_child("SIGHUP,SIGHUP,SIGHUP")
    assert done.returncode == 128 + signal.SIGHUP, done.stderr
    assert "recorded: interrupted by SIGHUP" in done.stdout


def test_a_second_sigterm_exits_at_once():
    done = run_child("SIGTERM,SIGTERM")
    assert done.returncode == 128 + signal.SIGTERM
    assert "recorded" not in done.stdout and "SIGTERM again: exiting now" in done.stderr


def test_a_second_signal_exits_even_when_nobody_reads_the_output():
    """stderr is a closed pipe: the 'exiting now' line cannot be written, the exit happens."""
    read, write = os.pipe()
    os.close(read)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, "SIGINT,SIGINT"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=write,
        text=True,
        timeout=60,
        preexec_fn=as_foreground_job,
    )
    os.close(write)
    assert done.returncode == 128 + signal.SIGINT and "recorded" not in done.stdout


def test_a_hangup_ignored_since_the_start_stays_ignored():
    """Started under nohup (SIGHUP ignored): a hang-up does not stop the sweep."""
    done = run_child("SIGHUP", ignore_hangup=True)
    assert done.returncode == 0 and "not interrupted" in done.stdout
