"""``study.workers=N``: N worker processes on this machine, all working on one study.

There is no queue or scheduler here: the workers are N copies of the sweep (``study.worker=i``)
that share the study through its storage, as workers on other machines do. This module only
starts them (each narrows its own GPUs from the same pool, as any worker does:
harness.base.devices; on CPU the cores divided among them), prefixes their output, passes
Ctrl-C / SIGTERM on, and prints the study's summary.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from omegaconf import DictConfig
from tqdm.auto import tqdm

from harness.base.devices import VISIBLE, gpu_pool, plan_workers
from harness.base.devices import threads_per_worker as threads_per_worker  # run.py's import
from harness.base.errors import ConfigError
from harness.base.interrupts import SIGNALS, handle
from harness.base.progress import is_terminal
from harness.base.storages import load_study
from harness.records import trials

if TYPE_CHECKING:
    from types import FrameType


def run_workers(cfg: DictConfig, overrides: list[str]) -> int:
    """Start ``study.workers`` copies of this sweep and wait for them; returns the exit status
    (0 when the study reached study.n_trials)."""
    workers = int(cfg.study.workers)
    try:  # each worker narrows its own devices (harness.base.devices): refused here first
        plan = plan_workers(cfg.study)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pool = ",".join(gpu_pool())  # counted once: every worker draws from the same pool
    processes: list[subprocess.Popen[str]] = []

    def pass_on(signum: int, frame: FrameType | None) -> None:  # workers run in their own sessions
        for process in processes:  # a hang-up (the terminal closed) stops them as SIGTERM does
            if process.poll() is None:
                process.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)

    # installed before the first worker starts: no worker is ever left without its launcher
    previous = handle(SIGNALS, pass_on)
    for index in range(workers):
        env = dict(os.environ)
        if pool:
            env[VISIBLE] = pool
        command = [
            sys.executable,
            "-m",
            "harness.sweep",
            *overrides,
            f"study.worker={index}",
            "display.progress=false",
            "report.enabled=false",
        ]  # the launcher writes the report at the end
        processes.append(
            subprocess.Popen(
                command,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
                preexec_fn=_stop_with(os.getpid()),
            )
        )
        where = plan[index].where()
        print(f"worker {index}: pid {processes[-1].pid}, {where}", file=sys.stderr, flush=True)
    readers = [
        threading.Thread(target=_forward, args=(i, p), daemon=True) for i, p in enumerate(processes)
    ]
    for reader in readers:
        reader.start()
    done = threading.Event()
    if cfg.display.progress and is_terminal(sys.stderr):  # else the workers' lines only
        threading.Thread(target=_progress, args=(cfg, done), daemon=True).start()

    try:
        codes = [process.wait() for process in processes]
    finally:
        done.set()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for reader in readers:
        reader.join(timeout=5)
    for index, code in enumerate(codes):
        if code < 0:
            print(
                f"worker {index} was killed ({signal.Signals(-code).name}): the other workers "
                "recover its trial",
                file=sys.stderr,
            )
        elif code > 0:
            print(f"worker {index} exited with status {code}", file=sys.stderr)
    return max((c for c in codes if c > 0), default=0)


def _stop_with(launcher: int) -> Callable[[], None]:
    """In a worker, before it runs: SIGHUP when the launcher dies, even by SIGKILL (Linux's
    parent-death signal), so that it records its running trial as interrupted and exits
    instead of running on headless. Elsewhere a no-op.

    SIGHUP, not SIGTERM: the kernel sends the parent-death signal again for each of the
    launcher's threads that dies after the one that started the worker (it hands the worker to
    them in turn), and a repeated SIGTERM would mean "exit now" in the middle of the record
    (harness.base.interrupts); repeated SIGHUPs count once."""

    def arm() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)  # not ignored, even under nohup
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGHUP))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
        if os.getppid() != launcher:  # it died before the signal was armed
            os.kill(os.getpid(), signal.SIGHUP)

    return arm


def _forward(index: int, process: subprocess.Popen[str]) -> None:
    """A worker's stderr lines, prefixed, above the progress bar."""

    for line in process.stderr or ():  # a pipe (stderr=PIPE)
        tqdm.write(f"[worker {index}] {line.rstrip()}", file=sys.stderr)


def _progress(cfg: DictConfig, done: threading.Event) -> None:
    """The study's progress across all its workers, read from the storage every 2 s."""

    total = int(cfg.study.n_trials)
    bar = tqdm(total=total, desc="trials", unit="trial", file=sys.stderr, dynamic_ncols=True)
    study = None
    while not done.wait(2.0):
        try:
            study = study or load_study(str(cfg.study.storage), str(cfg.study.name))
            counts = trials.count(study)
        except Exception:  # not created yet by the workers
            continue
        bar.n = min(counts["finished"], total)
        bar.set_postfix_str(f"running {counts['running']}, failed {counts['failed']}")
    bar.close()
