"""``study.workers=N``: N worker processes on this machine, all working on one study.

There is no queue or scheduler here: the workers are N copies of the sweep (``study.worker=i``)
that share the study through its storage, as workers on other machines do. This module only
starts them (one GPU each, round-robin over the visible GPUs; on CPU the cores divided among
them), prefixes their output, passes Ctrl-C / SIGTERM on, and prints the study's summary.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna
from omegaconf import DictConfig
from tqdm.auto import tqdm

from harness.base.interrupts import SIGNALS, handle
from harness.base.progress import is_terminal
from harness.records import trials

if TYPE_CHECKING:
    from types import FrameType


def threads_per_worker(study_cfg: DictConfig, worker: int | None = None) -> int | None:
    """Torch threads for one worker: study.threads, or this machine's cores divided among its
    ``study.workers`` (None: a lone process keeps torch's default)."""
    if study_cfg.get("threads"):
        return int(study_cfg.threads)
    workers = int(study_cfg.get("workers") or 1)
    if workers <= 1 or (worker if worker is not None else study_cfg.get("worker")) is None:
        return None
    return max(1, (os.cpu_count() or 1) // workers)


def gpu_for(worker: int) -> str | None:
    """The GPU a worker gets (CUDA_VISIBLE_DEVICES value), round-robin; None without GPUs."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
    else:
        try:
            import torch

            ids = [str(i) for i in range(torch.cuda.device_count())]
        except Exception:
            ids = []
    return ids[worker % len(ids)] if ids else None


def run_workers(cfg: DictConfig, overrides: list[str]) -> int:
    """Start ``study.workers`` copies of this sweep and wait for them; returns the exit status
    (0 when the study reached study.n_trials)."""
    workers = int(cfg.study.workers)
    processes: list[subprocess.Popen[str]] = []

    def pass_on(signum: int, frame: FrameType | None) -> None:  # workers run in their own sessions
        for process in processes:  # a hang-up (the terminal closed) stops them as SIGTERM does
            if process.poll() is None:
                process.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)

    # installed before the first worker starts: no worker is ever left without its launcher
    previous = handle(SIGNALS, pass_on)
    for index in range(workers):
        env = dict(os.environ)
        gpu = gpu_for(index)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
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
        where = (
            f"GPU {gpu}"
            if gpu is not None
            else f"{threads_per_worker(cfg.study, index) or 'all'} CPU threads"
        )
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
            study = study or optuna.load_study(
                study_name=cfg.study.name, storage=str(cfg.study.storage)
            )
            counts = trials.count(study)
        except Exception:  # not created yet by the workers
            continue
        bar.n = min(counts["finished"], total)
        bar.set_postfix_str(f"running {counts['running']}, failed {counts['failed']}")
    bar.close()
