"""Which devices a worker process gets: its GPUs (``CUDA_VISIBLE_DEVICES`` narrowed for it) and
its CPU threads, decided by :func:`devices_for` the same way whoever started the process: the
harness's own ``study.workers=N`` launcher, a Hydra launcher's job (``study.worker=i``), the
user (a lone process), or torchrun (the ranks of one trial).

The rules:

- **The pool** is an explicit ``CUDA_VISIBLE_DEVICES`` (the user's, or SLURM's, which sets it
  per job) or else every GPU this machine has (counted through NVML: CUDA is not initialised).
- **Groups**: the pool is cut into groups of ``study.gpus_per_worker`` GPUs; worker ``i`` gets
  group ``i % groups`` (round-robin, not ``i // workers_per_gpu``: with fewer workers than
  slots every GPU still gets one, and a Hydra launcher that runs its jobs a few at a time
  spreads them too). ``study.workers_per_gpu`` workers may share a group: ``study.workers=N``
  above ``groups × workers_per_gpu`` would overcommit and is refused (ConfigError naming
  study.workers); a launcher's job ``study.worker=i`` beyond it wraps around (its jobs need not
  run at once; under SLURM each job's own CUDA_VISIBLE_DEVICES is its pool).
- **A lone process** (``study.worker`` null) takes the first group: one GPU on a multi-GPU box,
  so the Trainer never falls into ``nn.DataParallel``.
- **Several GPUs per trial** only under torchrun (``WORLD_SIZE`` / ``LOCAL_RANK`` set): every
  rank of the trial sees the worker's group, and torchrun / accelerate put rank ``LOCAL_RANK`` on
  ``cuda:LOCAL_RANK`` of it. ``study.gpus_per_worker`` is then the ranks per node (1, the
  default, means "as many as torchrun started"); >1 outside torchrun is refused.

:func:`narrow_devices` applies the decision to this process; it must run before CUDA is
initialised here (``CUDA_VISIBLE_DEVICES`` is read once, when CUDA starts): ``python -m
harness.sweep`` calls it first thing. CPU threads follow :func:`threads_per_worker`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from harness.base.errors import ConfigError

if TYPE_CHECKING:
    from omegaconf import DictConfig

log = logging.getLogger(__name__)

VISIBLE = "CUDA_VISIBLE_DEVICES"
TORCHRUN = ("WORLD_SIZE", "LOCAL_RANK")  # set by torchrun and accelerate launch for every rank
# a GPU driver's files on Linux (NVIDIA, in containers too; AMD ROCm; WSL): none, no GPU
DRIVERS = ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/kfd", "/dev/dxg")


@dataclass(frozen=True)
class Devices:
    """What one worker process gets."""

    worker: int | None  # study.worker (None: a lone process)
    gpus: tuple[str, ...]  # its CUDA_VISIBLE_DEVICES entries (empty: the CPU)
    threads: int | None  # torch threads (None: torch's default)
    world_size: int = 1  # processes training one trial (torchrun's WORLD_SIZE)
    local_rank: int | None = None  # this rank's index on its node (torchrun's LOCAL_RANK)

    @property
    def visible(self) -> str:
        """The ``CUDA_VISIBLE_DEVICES`` value of the process."""
        return ",".join(self.gpus)

    def where(self) -> str:
        """Where it trains: "GPU 2", "GPUs 2,3" or "CPU, 4 threads"."""
        if self.gpus:
            return f"{'GPUs' if len(self.gpus) > 1 else 'GPU'} {self.visible}"
        return f"CPU, {self.threads or 'default'} threads"

    def describe(self) -> str:
        """The line logged once per process: "worker 1: GPU 2"."""
        who = "this process" if self.worker is None else f"worker {self.worker}"
        ranks = f" ({self.world_size} ranks, one GPU each)" if self.world_size > 1 else ""
        return f"{who}: {self.where()}{ranks}"

    def record(self) -> dict[str, object]:
        """The trial attribute (records.schema.DEVICES_ATTR): the GPUs, the torch threads in
        force (torch's own count once it is imported), and the ranks training the trial."""
        threads = self.threads
        torch = sys.modules.get("torch")
        if torch is not None:
            threads = int(torch.get_num_threads())
        return {"gpus": list(self.gpus), "threads": threads, "world_size": self.world_size}


def devices_for(
    study_cfg: DictConfig, worker: int | None = None, env: Mapping[str, str] | None = None
) -> Devices:
    """The devices of worker ``worker`` (default: ``study.worker``; None: a lone process) of a
    study, under the environment ``env`` (default: this process's). See the module for the
    rules. Raises :class:`ConfigError` naming study.workers or study.gpus_per_worker."""
    env = os.environ if env is None else env
    if worker is None:
        worker = study_cfg.get("worker")
    per_worker = int(study_cfg.get("gpus_per_worker") or 1)
    sharing = int(study_cfg.get("workers_per_gpu") or 1)
    ranks = world_size(env)
    local_rank = _integer(env.get("LOCAL_RANK"))
    torchrun = any(key in env for key in TORCHRUN)
    if torchrun:
        on_node = _integer(env.get("LOCAL_WORLD_SIZE")) or ranks
        if per_worker not in (1, on_node):
            raise ConfigError(
                "study.gpus_per_worker",
                f"torchrun started {on_node} rank(s) on this node, one GPU each: set "
                f"study.gpus_per_worker={on_node} (or leave it at 1), or start "
                f"torchrun --nproc_per_node={per_worker}",
            )
        per_worker = on_node
    elif per_worker > 1:
        raise ConfigError(
            "study.gpus_per_worker",
            f"{per_worker} GPUs for one trial need one process per GPU: run "
            f"`torchrun --nproc_per_node={per_worker} -m harness.sweep … "
            f"study.gpus_per_worker={per_worker}` (or set study.gpus_per_worker=1)",
        )
    threads = threads_per_worker(study_cfg, worker)
    pool = gpu_pool(env)
    if not pool:  # the CPU (or a CPU-only torch)
        return Devices(worker, (), threads, ranks, local_rank)
    groups = len(pool) // per_worker
    if groups == 0:
        raise ConfigError(
            "study.gpus_per_worker",
            f"{per_worker} GPUs per worker, but only {len(pool)} visible "
            f"({_pool_source(env)}: {','.join(pool)})",
        )
    workers = int(study_cfg.get("workers") or 1)
    if workers > groups * sharing:
        raise ConfigError(
            "study.workers",
            f"{workers} workers on {len(pool)} GPU(s) ({_pool_source(env)}: {','.join(pool)}) "
            f"with {per_worker} GPU(s) each would put more than study.workers_per_gpu={sharing} "
            f"on a GPU: set study.workers to at most {groups * sharing}, or raise "
            "study.workers_per_gpu",
        )
    group = (worker or 0) % groups  # round-robin (see the module)
    return Devices(
        worker,
        tuple(pool[group * per_worker : (group + 1) * per_worker]),
        threads,
        ranks,
        local_rank,
    )


def plan_workers(study_cfg: DictConfig) -> list[Devices]:
    """The devices of each of the ``study.workers`` processes the harness's launcher starts
    (:func:`devices_for`, in the launcher: a refusal comes before any worker starts)."""
    return [devices_for(study_cfg, worker=i) for i in range(int(study_cfg.get("workers") or 1))]


_applied: Devices | None = None  # what narrow_devices chose in this process
# CUDA_VISIBLE_DEVICES as this process found it, before narrow_devices changed it: the pool of
# a later call in the same process (a Hydra joblib launcher's process runs job after job)
_found: dict[str, str | None] = {}


def narrow_devices(study_cfg: DictConfig) -> Devices:
    """Decide this process's devices (:func:`devices_for`), narrow ``CUDA_VISIBLE_DEVICES`` to
    them and log them once ("worker 1: GPU 2"). Call it before anything initialises CUDA: once
    CUDA started in a process, a change of ``CUDA_VISIBLE_DEVICES`` has no effect; then the
    process keeps the GPUs it has, a warning says so, and those are what the trials record."""
    global _applied
    env = dict(os.environ)
    found = _found.setdefault(VISIBLE, os.environ.get(VISIBLE))
    env.pop(VISIBLE, None)
    if found is not None:
        env[VISIBLE] = found
    devices = devices_for(study_cfg, env=env)
    if devices.gpus and os.environ.get(VISIBLE) != devices.visible:
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            log.warning(
                "CUDA started in this process before its GPUs were chosen: it keeps "
                "CUDA_VISIBLE_DEVICES=%s, not %s (a Hydra joblib launcher reuses its processes: "
                "give it hydra.launcher.n_jobs >= the number of jobs)",
                os.environ.get(VISIBLE, "unset"),
                devices.visible,
            )
            kept = tuple(gpu_pool(os.environ))
            devices = Devices(
                devices.worker, kept, devices.threads, devices.world_size, devices.local_rank
            )
        else:
            os.environ[VISIBLE] = devices.visible
    _applied = devices
    if not devices.local_rank:  # one line per worker, not per rank (a lone CPU process: none)
        quiet = not devices.gpus and devices.worker is None
        log.log(logging.DEBUG if quiet else logging.INFO, "%s", devices.describe())
    return devices


def current() -> dict[str, object]:
    """This process's devices, as a trial records them (records.schema.DEVICES_ATTR): those
    :func:`narrow_devices` chose, or else what the process sees (a study run in-process)."""
    if _applied is not None:
        return _applied.record()
    return Devices(None, tuple(gpu_pool(os.environ)), None, world_size()).record()


def world_size(env: Mapping[str, str] | None = None) -> int:
    """Processes training one trial: torchrun's ``WORLD_SIZE``, else 1."""
    env = os.environ if env is None else env
    return max(1, _integer(env.get("WORLD_SIZE")) or 1)


def threads_per_worker(study_cfg: DictConfig, worker: int | None = None) -> int | None:
    """Torch threads for one worker: study.threads, or this machine's cores divided among its
    ``study.workers`` (None: a lone process keeps torch's default)."""
    if study_cfg.get("threads"):
        return int(study_cfg.threads)
    workers = int(study_cfg.get("workers") or 1)
    if workers <= 1 or (worker if worker is not None else study_cfg.get("worker")) is None:
        return None
    return max(1, (os.cpu_count() or 1) // workers)


def gpu_pool(env: Mapping[str, str] | None = None) -> list[str]:
    """The GPUs workers are drawn from: ``CUDA_VISIBLE_DEVICES`` when set (entries as given:
    ordinals, UUIDs or MIG ids; CUDA ignores everything from the first negative one on), else
    the ordinals of every GPU of this machine."""
    env = os.environ if env is None else env
    visible = env.get(VISIBLE)
    if visible is not None:
        pool = []
        for entry in (e.strip() for e in visible.split(",")):
            if not entry:
                continue
            if entry.startswith("-"):
                break
            pool.append(entry)
        return pool
    return [str(i) for i in range(_machine_gpus())]


@cache  # a machine's GPUs do not come and go while it runs a sweep
def _machine_gpus() -> int:
    """This machine's GPUs, without initialising CUDA in this process: torch's NVML (or AMD SMI)
    count, which ``torch.cuda.device_count`` also tries first; where that fails, the count of a
    short child process (``cudaGetDeviceCount`` would fix this process's visible devices).
    A Linux machine without a GPU driver's device files counts none without importing torch."""
    if (
        sys.platform == "linux"
        and "torch" not in sys.modules
        and not any(map(os.path.exists, DRIVERS))
    ):
        return 0
    try:
        import torch
    except ImportError:
        return 0
    if not torch.cuda._is_compiled():  # a CPU build
        return 0
    if torch.cuda.is_initialized():
        return int(torch.cuda.device_count())
    smi = getattr(
        torch.cuda, "_device_count_amdsmi" if torch.version.hip else "_device_count_nvml", None
    )
    try:
        count = int(smi()) if smi is not None else -1
    except Exception:  # a private torch function: any failure means "ask a child"
        count = -1
    if count >= 0:
        return count
    try:
        out = subprocess.run(
            [sys.executable, "-c", "import torch; print(torch.cuda.device_count())"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return int(out.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        log.warning("could not count this machine's GPUs: running on the CPU")
        return 0


def _pool_source(env: Mapping[str, str]) -> str:
    return VISIBLE if env.get(VISIBLE) is not None else "this machine's GPUs"


def _integer(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None
