"""``study.workers=N``: N worker processes on this machine, all working on one study.

There is no queue or scheduler here: the workers are N copies of the sweep (``study.worker=i``)
that share the study through its storage, as workers on other machines do. This module only
starts them (each narrows its own GPUs from the same pool, as any worker does:
harness.base.devices; on CPU the cores divided among them), prefixes their output, passes
Ctrl-C / SIGTERM on, and prints the study's summary.

:class:`FinalHelpers` (``final.workers``) starts such copies for a lone process's final stage
only: they train its queued runs beside it and leave everything else to it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from omegaconf import DictConfig
from tqdm.auto import tqdm

from harness.base import distributed
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
        processes.append(_start_copy([*overrides, f"study.worker={index}"], env))
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


def _start_copy(overrides: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """This sweep again with ``overrides``, in its own session (signals reach it through its
    launcher, which writes the report), stopped when the launcher dies; stderr piped."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.sweep",
            *overrides,
            "display.progress=false",
            "report.enabled=false",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_stop_with(os.getpid()),
    )


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
    _forward_as(f"worker {index}", process)


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


# ---------------------------------------------------------------------- final-stage helpers

HELPER_ENV = "HARNESS_FINAL_HELPER"  # set in a final-stage helper's environment (its index)
# the overrides a helper gets its own values of
_WORKER_KEYS = re.compile(
    r"^[+~]*(study\.workers?|study\.threads|display\.progress|report\.enabled)="
)


def final_processes(cfg: DictConfig, runs: int) -> int:
    """How many processes train the final stage's ``runs`` at once (``final.workers``): this
    one and its helpers. More than 1 only for a lone process (not a worker of several, not under
    torchrun) on a CPU with the cores for them, and never more than the runs."""
    wanted = int(cfg.final.get("workers") or 1)
    if (
        wanted <= 1
        or runs < 2
        or cfg.study.get("worker") is not None
        or int(cfg.study.get("workers") or 1) > 1
        or distributed.launched()
        or gpu_pool()
    ):
        return 1
    return max(1, min(wanted, runs, os.cpu_count() or 1))


class FinalHelpers:
    """``final.workers``: processes that train a lone sweep's final-stage runs beside it, the
    cores divided among them (on 2 cores, two one-thread processes train the default sweep's
    runs in about three quarters of one two-thread process's time: docs/benchmarks.md, "The
    default study, end to end").

    A helper is this sweep's command line with ``study.worker=i`` and :data:`HELPER_ENV` set: it
    takes queued final runs as any worker does (heartbeats, recovery, each run once) until none
    is left, then exits; the choice, the test scores, the records and the summary stay with this
    process. Its lines come out prefixed ``[final i]``. It stops with this process: Ctrl-C or
    SIGTERM here are passed on (its run recorded as interrupted, queued again), and a SIGKILL
    here reaches it as SIGHUP. A helper that fails leaves its runs to this process."""

    def __init__(self, overrides: list[str]) -> None:
        self.overrides = [o for o in overrides if not _WORKER_KEYS.match(o)]
        self.processes: list[subprocess.Popen[str]] = []
        self.readers: list[threading.Thread] = []
        self.threads_before: int | None = None

    def start(self, cfg: DictConfig, runs: int) -> int:
        """Start the helpers the final stage's ``runs`` call for; returns how many processes
        now train them (1: this one alone, nothing started)."""
        count = final_processes(cfg, runs)
        if count <= 1:
            return 1
        import torch

        threads = int(cfg.study.get("threads") or max(1, (os.cpu_count() or 1) // count))
        self.threads_before = torch.get_num_threads()
        torch.set_num_threads(threads)
        for index in range(1, count):
            process = _start_copy(
                [*self.overrides, f"study.worker={index}", f"study.threads={threads}"],
                {**os.environ, HELPER_ENV: str(index)},
            )
            self.processes.append(process)
            reader = threading.Thread(target=_forward_as, args=(f"final {index}", process))
            reader.daemon = True
            reader.start()
            self.readers.append(reader)
        tqdm.write(
            f"final stage: {count} processes train its runs ({count - 1} helper(s), pid "
            f"{', '.join(str(p.pid) for p in self.processes)}; {threads} thread(s) each)",
            file=sys.stderr,
        )
        return count

    def stop(self, interrupted: bool) -> None:
        """Wait for the helpers (they exit once no run is left); ``interrupted``: stop them
        first, as Ctrl-C would (their running runs recorded as interrupted)."""
        if interrupted:
            for process in self.processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
        codes = [process.wait() for process in self.processes]
        for reader in self.readers:
            reader.join(timeout=5)
        if self.threads_before is not None:
            import torch

            torch.set_num_threads(self.threads_before)
        for index, code in enumerate(codes, start=1):
            if code != 0 and not interrupted:
                tqdm.write(
                    f"final stage: helper {index} exited with status {code}; its runs were "
                    "left to this process",
                    file=sys.stderr,
                )
        self.processes, self.readers, self.threads_before = [], [], None


def _forward_as(prefix: str, process: subprocess.Popen[str]) -> None:
    """A helper's stderr lines, prefixed, above the progress bar."""

    for line in process.stderr or ():  # a pipe (stderr=PIPE)
        with contextlib.suppress(OSError):  # this process's own stderr may be gone
            tqdm.write(f"[{prefix}] {line.rstrip()}", file=sys.stderr)
