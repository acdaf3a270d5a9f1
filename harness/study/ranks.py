"""One trial across processes (``torchrun`` / ``accelerate launch``): rank 0 leads, the others
follow.

Rank 0 runs the study as a lone process would: Optuna chooses the trial, MLflow records it,
the checkpoint is saved there. When a trial (or a final-stage run) starts training, rank 0 hands
its configuration to the other ranks (an :class:`Order`: the trial's config, its sampled values,
the paused state it continues); every rank trains it with the same Trainer under DDP, which
gathers each evaluation's predictions from all ranks (every rank scores the whole validation
set). At each evaluation rank 0 reports to Optuna, asks the pruner and hands its decision on
(:class:`~harness.train.callbacks.PruningCallback`), so every rank stops at the same one. The
other ranks (:func:`follow`) write nothing: no Optuna, no MLflow, no checkpoint. When the study
ends, rank 0 tells them so and they exit.

Failures. A fine-tune that failed on every rank at the same point (a NaN loss, a configuration
the model refuses) fails as in a lone process, and the study goes on. When the ranks fell out
of step (one failed, died or was stopped while the others train: they wait in a collective
operation that will never complete) they cannot go on together: rank 0 records the trial as
interrupted (the next run retries it, ``study.max_retries`` times) and ends the launch with exit
status 1; torchrun stops the other ranks when one ends. ``torchrun --max-restarts=N`` restarts
them, and the study resumes.

``HARNESS_RANK_RECORD=FOLDER`` (diagnostics, used by the tests): every rank appends one JSON line
per fine-tune to ``FOLDER/rank-R.jsonl``: what it trained (its config's sampled values and
learning rate), each evaluation's metrics as that rank saw them, where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from harness.base import distributed, faults
from harness.base.devices import threads_per_worker
from harness.base.errors import first_line
from harness.records import trials
from harness.study.setup import prepare_study, validate_config
from harness.train.memory import release_memory

if TYPE_CHECKING:
    from transformers import TrainerCallback

    from harness.study.objective import FineTune
    from harness.train.finetune import FinetuneResult

log = logging.getLogger(__name__)

RECORD_ENV = "HARNESS_RANK_RECORD"
ORDER = "order"  # the tag of rank 0's orders (a trial to train, or None: the study is over)


@dataclass(frozen=True)
class Order:
    """One fine-tune the ranks train together, as rank 0 hands it on."""

    number: int  # the trial's number in its Optuna study (the fault points' trial)
    final: bool  # a final-stage run
    label: str  # "trial 3", "final-2-seed1": in the logs and the rank record
    cfg: DictConfig  # the trial's configuration
    values: dict[str, Any] = field(default_factory=dict)  # its sampled values (any param type)
    pruning: bool = False  # rank 0's pruner may stop it (PruningCallback on every rank)
    pause: bool = False  # a stop pauses it: every rank's Trainer saves at that evaluation
    resume_from: Path | None = None  # the paused state it continues
    init_seed: int | None = None
    # the evaluations the pruner decides at (None: any); the same on every rank, so that every
    # rank skips the same ones (train.evaluate_from)
    decisions: frozenset[int] | None = None


class RanksOutOfStep(KeyboardInterrupt):
    """The ranks fell out of step during a trial (one failed, died or was stopped while the
    others trained): the trial is recorded as interrupted and retried by the next run, as after
    Ctrl-C, and the launch ends (exit status 1)."""

    exit_code = 1

    def __init__(self, why: str) -> None:
        self.name = f"the ranks falling out of step ({why})"
        super().__init__(f"interrupted by {self.name}")


_in_step = [True]  # False once a trial left the ranks out of step: nothing more is sent


def train(
    order: Order, fine_tune: Callable[[list[TrainerCallback]], FinetuneResult]
) -> FinetuneResult:
    """Rank 0: hand ``order`` to the other ranks and train it with them. ``fine_tune(extra)``
    runs rank 0's fine-tune with ``extra`` callbacks added to its own. In a lone process:
    ``fine_tune([])``. Raises :class:`RanksOutOfStep` when a failure left the ranks out of step."""
    if not distributed.started():
        return fine_tune([])
    distributed.from_leader(order, tag=ORDER)
    recorder = _Recorder(order)
    try:
        result = fine_tune(recorder.callbacks())
    except KeyboardInterrupt:  # Ctrl-C / SIGTERM reach every rank (torchrun passes them on)
        _in_step[0] = False
        raise
    except Exception as exc:
        error = f"{type(exc).__name__}: {first_line(exc)}"
        recorder.write(None, error)
        if not _still_in_step(error):
            _in_step[0] = False
            raise RanksOutOfStep(f"{order.label} failed on rank 0: {error}") from exc
        raise
    recorder.write(result)
    return result


@contextmanager
def leading() -> Iterator[None]:
    """Rank 0's whole run (no-op in a lone process): on its way out, however it ends, the other
    ranks are told the study is over, unless a trial left them out of step (then its exit
    ends theirs)."""
    try:
        yield
    finally:
        if distributed.started() and _in_step[0]:
            with suppress(Exception):  # a rank already gone: torchrun ends the launch anyway
                distributed.from_leader(None, tag=ORDER)
            distributed.stop()


def follow(cfg: DictConfig, finetune: FineTune | None = None) -> int:
    """A rank > 0: prepare what the trials share, then train each order rank 0 hands on until it
    says the study is over. Returns the exit status: 0, or 1 when a failure left the ranks out
    of step."""
    here = distributed.world()
    threads = threads_per_worker(cfg.study)
    if threads:
        import torch

        torch.set_num_threads(threads)
    prepared = prepare_study(cfg, validate_config(cfg))
    if finetune is None:
        from harness.train.finetune import finetune as real_finetune

        finetune = real_finetune
    while True:
        order: Order | None = distributed.from_leader(None, tag=ORDER)
        if order is None:
            distributed.stop()
            return 0
        from harness.train.callbacks import PruningCallback

        recorder = _Recorder(order)
        pruning: list[TrainerCallback] = []
        if order.pruning:
            reported, sign = trials.pruning_signal(cfg.study)
            pruning.append(PruningCallback(None, reported, sign, pause=order.pause))
        faults.set_trial(order.number, final=order.final)
        try:
            result = finetune(
                order.cfg,
                prepared.base,
                prepared.datasets,
                prepared.metrics,
                callbacks=[*pruning, *recorder.callbacks()],
                resume_from=order.resume_from,
                init_seed=order.init_seed,
                decisions=order.decisions,
            )
        except Exception as exc:
            error = f"{type(exc).__name__}: {first_line(exc)}"
            recorder.write(None, error)
            if not _still_in_step(error):
                log.error(
                    "rank %d: %s failed (%s); out of step: stopping", here.rank, order.label, error
                )
                return 1
            continue
        finally:
            faults.set_trial(None)
            release_memory()
        recorder.write(result)


def _still_in_step(error: str) -> bool:
    """After a failed fine-tune: did every rank fail it too (they meet here within
    distributed.STATUS_TIMEOUT)? Otherwise a rank waits in a collective operation that will
    never complete, or is gone."""
    statuses = distributed.gather_status(("failed", error))
    return statuses is not None and all(s is not None and s[0] == "failed" for s in statuses)


class _Recorder:
    """``HARNESS_RANK_RECORD``'s line of one fine-tune on this rank (see the module)."""

    def __init__(self, order: Order) -> None:
        self.order = order
        self.folder = os.environ.get(RECORD_ENV)
        self.evaluations: list[dict[str, float]] = []

    def callbacks(self) -> list[TrainerCallback]:
        if not self.folder:
            return []
        from harness.train.callbacks import OnEvaluate

        skip = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second")
        return [
            OnEvaluate(
                lambda _, metrics: self.evaluations.append(
                    {k: float(v) for k, v in metrics.items() if k not in skip}
                )
            )
        ]

    def write(self, result: FinetuneResult | None, error: str = "") -> None:
        if not self.folder:
            return
        here = distributed.world()
        order = self.order
        line = {
            "rank": here.rank,
            "world_size": here.size,
            "pid": os.getpid(),
            "label": order.label,
            "number": order.number,
            "final": order.final,
            "values": {k: _plain(v) for k, v in order.values.items()},
            "continued": order.resume_from is not None,  # from a paused state
            "learning_rate": float(order.cfg.train.learning_rate),
            "evaluations": self.evaluations,
            "error": error,
        }
        if result is not None:
            line.update(
                stopped_at=result.evaluations,
                pruned=result.pruned,
                paused=result.paused,
                steps=result.steps,
                value=result.value,
            )
        path = Path(self.folder) / f"rank-{here.rank}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            out.write(json.dumps(line) + "\n")
        print(f"rank {here.rank}: {order.label} ended", file=sys.stderr, flush=True)


def _plain(value: object) -> object:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)
