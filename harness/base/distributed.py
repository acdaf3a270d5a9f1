"""Processes launched to train one trial together (``torchrun`` / ``accelerate launch``): which
one this is, the process group, and the Python objects rank 0 hands to the other ranks.

torchrun and accelerate set ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT`` for every rank; with ``WORLD_SIZE`` > 1 the ranks train each trial together
(the protocol: :mod:`harness.study.ranks`). :func:`start` opens the process group once per
process (gloo on CPUs, NCCL on GPUs) and, beside it, two gloo groups for Python objects: one
for rank 0's orders and decisions (it may wait as long as rank 0 needs between two trials),
one with a short timeout for the check that the ranks are still in step after a failure. The
Trainer (through accelerate) reuses the process group it finds.

This module imports torch only when a process was launched so (:func:`launched`).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar, cast

from harness.base.errors import ConfigError

if TYPE_CHECKING:
    from omegaconf import DictConfig
    from torch.distributed import ProcessGroup

T = TypeVar("T")

# How long a follower waits for rank 0's next order: as long as the study needs between two
# trials (rank 0 may wait for other workers' trials, write the report, score the test split).
ORDER_TIMEOUT = datetime.timedelta(days=7)
# How long the ranks wait for each other at the check after a failed fine-tune: ranks that
# failed at the same point (a NaN loss on every rank) meet within a training step; longer, and
# a rank is stuck in a collective operation its peer will never join.
STATUS_TIMEOUT = datetime.timedelta(seconds=float(os.environ.get("HARNESS_RANK_TIMEOUT", 120)))


@dataclass(frozen=True)
class World:
    """This process among those torchrun started: ``rank`` (0: the leader), ``local_rank`` (its
    index on its node) and ``size`` (processes in all)."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def leader(self) -> bool:
        return self.rank == 0


def world() -> World:
    """This process's place, from the environment torchrun / accelerate launch set (a lone
    process: rank 0 of 1)."""

    def read(name: str, default: int) -> int:
        try:
            return int(os.environ.get(name) or default)
        except ValueError:
            return default

    return World(read("RANK", 0), read("LOCAL_RANK", 0), max(1, read("WORLD_SIZE", 1)))


def launched() -> bool:
    """Was this process launched with others to train each trial together (WORLD_SIZE > 1)?"""
    return world().size > 1


def check_workers(study_cfg: DictConfig) -> None:
    """A ConfigError where torchrun's ranks would each start the harness's own workers."""
    if launched() and int(study_cfg.get("workers") or 1) > 1:
        raise ConfigError(
            "study.workers",
            "torchrun / accelerate launch started the processes that train each trial "
            "together: use one or the other (study.workers=1 under torchrun, or "
            "study.workers=N without it)",
        )


_groups: dict[str, ProcessGroup] = {}  # "orders", "status": this process's (one per process)


def start() -> World:
    """Open the process group (once) and the object groups; returns this process's place."""
    here = world()
    if _groups or here.size == 1:
        return here
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        if torch.cuda.is_available():  # one GPU per rank: cuda:LOCAL_RANK of those visible
            torch.cuda.set_device(here.local_rank % torch.cuda.device_count())
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    _groups["orders"] = dist.new_group(backend="gloo", timeout=ORDER_TIMEOUT)
    _groups["status"] = dist.new_group(backend="gloo", timeout=STATUS_TIMEOUT)
    return here


def started() -> bool:
    return bool(_groups)


class OutOfStep(RuntimeError):
    """A rank received another message from rank 0 than the one it waited for."""


def from_leader(value: T, tag: object = None) -> T:
    """Rank 0's ``value``, on every rank (the others pass a placeholder); ``value`` itself in a
    lone process. Every rank calls it at the same point, with the same ``tag`` (what the message
    is: a rank that gets another raises :class:`OutOfStep` instead of misreading it)."""
    if not _groups:
        return value
    import torch.distributed as dist

    box: list[object] = [(tag, value)]
    dist.broadcast_object_list(box, src=0, group=_groups["orders"])
    sent = cast("tuple[object, T]", box[0])  # the (tag, value) pair rank 0 sent
    if sent[0] != tag:
        raise OutOfStep(f"waited for {tag!r} from rank 0, got {sent[0]!r}")
    return sent[1]


def to_leader(value: T, tag: object = None) -> list[T] | None:
    """Every rank's ``value`` (rank order) on rank 0, None on the others; ``[value]`` in a lone
    process. Every rank calls it at the same point, with the same ``tag`` (a rank that sent
    another raises :class:`OutOfStep` on rank 0 instead of being misread)."""
    if not _groups:
        return [value]
    import torch.distributed as dist

    here = world()
    out: list[object] | None = [None] * here.size if here.leader else None
    dist.gather_object((tag, value), out, dst=0, group=_groups["orders"])
    if out is None:
        return None
    sent = cast("list[tuple[object, T]]", out)  # each rank's (tag, value) pair
    for rank, (their_tag, _) in enumerate(sent):
        if their_tag != tag:
            raise OutOfStep(f"waited for {tag!r} from rank {rank}, got {their_tag!r}")
    return [v for _, v in sent]


def gather_status(status: T) -> list[T] | None:
    """Every rank's ``status`` (rank order), or None when some rank did not come within
    :data:`STATUS_TIMEOUT` or is gone: the ranks are out of step."""
    if not _groups:
        return [status]
    import torch.distributed as dist

    out: list[object] = [None] * world().size
    try:
        dist.all_gather_object(out, status, group=_groups["status"])
    except Exception:  # a timeout, or a peer that died: gloo's RuntimeError / DistBackendError
        return None
    return cast("list[T]", out)  # the ranks' objects, of the caller's type


def stop() -> None:
    """Close the process group (the end of a run; nothing more is sent)."""
    if not _groups:
        return
    import torch.distributed as dist

    _groups.clear()
    if dist.is_initialized():
        dist.destroy_process_group()


def training_args() -> dict[str, object]:
    """TrainingArguments a launched process needs: on a CPU, ``use_cpu`` (without it the Trainer
    sees no distributed CPU run and every rank would train alone) and the gloo backend."""
    if not launched():
        return {}
    import torch

    if torch.cuda.is_available():
        return {}
    return {"use_cpu": True, "ddp_backend": "gloo"}
