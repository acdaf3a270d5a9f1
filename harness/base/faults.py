"""Fault points: make a real run fail, pause or die at a named point (crash-safety tests).

Set ``HARNESS_FAULTS`` to a comma-separated list of ``POINT[:TRIAL[:HIT]]=ACTION``:

- POINT: ``sample`` (a trial's parameters being sampled, before its MLflow run exists),
  ``train_step`` (a training step), ``evaluate`` (a validation batch), ``checkpoint``
  (between the weights and the tokenizer of a checkpoint being written), ``artifact``
  (between two files of a checkpoint being logged to MLflow), ``pause_state`` (a paused
  trial's training state half written: the Trainer's part saved, the harness's not yet) or
  ``promotion`` (a promoted trial that has reported the evaluations it continues and started
  its MLflow curve, before it trains on), ``recorded`` (Optuna has recorded the trial's
  end, its MLflow run is not ended yet) or ``queue`` (the final stage has read which of its
  runs exist and is about to queue the missing ones; no trial: give none).
- TRIAL: the trial number (any trial when left out); HIT: the n-th time the trial reaches the
  point (1 = the first, the default). In the final stage the points are ``final_<point>`` and
  TRIAL is the final run's number (0, 1, … in the order the runs started).
- ACTION: ``pause`` (print ``harness fault: POINT reached (trial T, pid P)`` on stderr and wait
  to be killed or interrupted), ``wait`` (print the same, wait 3 s, go on), ``raise``
  (RuntimeError), ``oom`` (torch.OutOfMemoryError), ``nan`` (``train_step`` only: that step's
  loss becomes NaN) or ``kill`` (SIGKILL itself).

Unset (the normal case), :func:`hit` costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass

from harness.base import interrupts

ENV = "HARNESS_FAULTS"
POINTS: tuple[str, ...] = (
    "sample",
    "train_step",
    "evaluate",
    "checkpoint",
    "artifact",
    "pause_state",
    "promotion",
    "recorded",
    "queue",
)
POINTS += tuple(f"final_{point}" for point in POINTS)
ACTIONS = ("pause", "wait", "raise", "oom", "nan", "kill")


@dataclass(frozen=True)
class Rule:
    point: str
    trial: int | None
    hit: int
    action: str


class InjectedFault(RuntimeError):
    """The error an injected ``raise`` fault throws."""


_trial: int | None = None
_stage = ""  # "final_" while a final-stage run trains
_hits: Counter[str] = Counter()
_parsed: tuple[str, list[Rule]] = ("", [])


def set_trial(number: int | None, final: bool = False) -> None:
    """The trial (or ``final`` stage run) now running in this process (rules may name one)."""
    global _trial, _stage
    _trial, _stage = number, "final_" if final else ""
    _hits.clear()


def hit(point: str) -> str | None:
    """Called at a fault point: does what a matching rule says; returns ``"nan"`` for the caller
    to act on, otherwise None."""
    spec = os.environ.get(ENV)
    if not spec:
        return None
    point = _stage + point
    _hits[point] += 1
    for rule in _rules(spec):
        if rule.point == point and rule.trial in (None, _trial) and rule.hit == _hits[point]:
            return _act(rule)
    return None


def _act(rule: Rule) -> str | None:
    where = f"{rule.point} reached (trial {_trial}, pid {os.getpid()})"
    if rule.action == "pause":
        print(f"harness fault: {where}", file=sys.stderr, flush=True)
        while not interrupts.pending():  # until a signal ends it (or, where the first
            time.sleep(0.05)  # signal waits for a save, asks for one: the run goes on to it)
        return None
    if rule.action == "wait":  # time for a test to act (suspend the process, say), then on
        print(f"harness fault: {where}", file=sys.stderr, flush=True)
        time.sleep(3.0)
        return None
    if rule.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if rule.action == "raise":
        raise InjectedFault(f"injected failure: {where}")
    if rule.action == "oom":
        import torch

        raise torch.OutOfMemoryError(f"injected out of memory: {where}")
    return rule.action  # nan


def _rules(spec: str) -> list[Rule]:
    global _parsed
    if _parsed[0] != spec:
        _parsed = (spec, [_parse(item.strip()) for item in spec.split(",") if item.strip()])
    return _parsed[1]


def _parse(item: str) -> Rule:
    where, _, action = item.partition("=")
    parts = where.split(":")
    if action not in ACTIONS or parts[0] not in POINTS or len(parts) > 3:
        raise ValueError(
            f"{ENV}: cannot read '{item}' (POINT[:TRIAL[:HIT]]=ACTION, points "
            f"{', '.join(POINTS)}, actions {', '.join(ACTIONS)})"
        )
    trial = int(parts[1]) if len(parts) > 1 and parts[1] else None
    return Rule(parts[0], trial, int(parts[2]) if len(parts) > 2 else 1, action)
