"""Trainer callbacks of a trial: pruning, the best snapshot, metric logging, the final evaluation.

Each evaluation is one pruning *step* (1, 2, …): with ``train.evals_per_epoch`` evaluations per
epoch, step k means the same fraction of training in every trial, whatever its batch size. The
step is the evaluation's index in that schedule (:func:`evaluation_index`), also where
:class:`EvaluationSchedule` skips evaluations (``train.evaluate_from``).

A run paused at an evaluation and continued later (:func:`harness.train.finetune.finetune`'s
``pause_to`` / ``resume_from``) carries the callbacks' own state across: each callback with a
state has ``state()`` and ``load_state(state)``, saved beside the Trainer's checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from transformers import TrainerCallback

from harness.base import distributed
from harness.base.direction import is_better
from harness.base.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import optuna
    import torch
    from transformers import EvalPrediction
    from transformers import TrainerControl as Control
    from transformers import TrainerState as RunState
    from transformers import TrainingArguments as Args

    Metrics: TypeAlias = dict[str, float]  # an evaluation's, by the Trainer's names (eval_loss…)
    Model: TypeAlias = "torch.nn.Module | None"

# A callback's own state (saved as JSON beside a paused run's Trainer checkpoint): Any, since
# each callback keeps values of its own kinds there.
State = dict[str, Any]

# Trainer log keys that describe the run, not the model: not logged as metrics.
_SKIP = {"eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "total_flos"}


def _study_value(metrics: dict[str, float], metric: str) -> float:
    key = f"eval_{metric}"
    if key not in metrics:
        found = sorted(k.removeprefix("eval_") for k in metrics if k.startswith("eval_"))
        raise ConfigError("study.metric", f"'{metric}' is not computed (computed: {found})")
    return float(metrics[key])


def evaluation_index(global_step: int, eval_steps: int) -> int:
    """The index (1, 2, …) in the training's evaluation schedule of an evaluation at
    ``global_step``: evaluation k falls on step k * eval_steps, the last one on the budget's last
    step (:class:`EvaluateAtEnd`). Skipped evaluations keep their index, so step k means the same
    in every trial whichever evaluations ran."""
    return max(1, math.ceil(global_step / max(1, eval_steps)))


class HarnessCallback(TrainerCallback):  # type: ignore[misc]  # transformers: untyped for mypy
    """A Trainer callback of the harness's: the Trainer's evaluation hook is typed once here, and
    a callback that acts on an evaluation overrides :meth:`evaluated`, which gets the
    evaluation's :func:`evaluation_index` as :attr:`index`."""

    index = 0  # the index of the evaluation being handled (set before evaluated is called)

    def on_evaluate(
        self,
        args: Args,
        state: RunState,
        control: Control,
        model: torch.nn.Module | None = None,
        metrics: dict[str, float] | None = None,
        **kwargs: object,
    ) -> None:
        self.index = evaluation_index(int(state.global_step), int(args.eval_steps))
        self.evaluated(dict(metrics or {}), state, control, model)

    def evaluated(self, metrics: Metrics, state: RunState, control: Control, model: Model) -> None:
        """After each evaluation: its metrics (``eval_*`` keys); the Trainer's state and control;
        the model being trained."""


class EvaluationCounter(HarnessCallback):
    """The index of the last evaluation (1, 2, …) in :attr:`count` (skipped evaluations count,
    see :func:`evaluation_index`), part of a paused run's saved state (under ``state_key``, as
    each callback has always saved it)."""

    state_key: ClassVar[str] = "count"

    def __init__(self) -> None:
        self.count = 0

    def state(self) -> State:
        return {self.state_key: self.count}

    def load_state(self, state: State) -> None:
        self.count = int(state[self.state_key])


class PruningCallback(EvaluationCounter):
    """Reports a validation metric to an Optuna trial at every evaluation; stops when pruned.

    ``metric`` is the study metric, or ``study.prune_metric``'s (e.g. the loss), reported as
    ``sign * value`` so that it runs in the study's direction (-1: the loss of a study that
    maximizes accuracy). Training stops cleanly (``should_training_stop``); the caller raises
    ``optuna.TrialPruned`` once ``trainer.train()`` has returned and :attr:`pruned` is true.
    The pruner is not asked at a trial's last evaluation: a trial that reached it is complete.

    ``pause``: a stop is a pause (the promotion scheduler): the Trainer also saves its full
    training state at that evaluation (``control.should_save``), for a later continuation.

    Ranks training one trial together (torchrun, :mod:`harness.base.distributed`): rank 0 holds
    the trial, reports and asks the pruner; the other ranks get ``trial=None`` and take rank 0's
    decision at each evaluation, so that every rank stops at the same one.
    """

    state_key = "step"  # the evaluation index is the pruning step

    def __init__(
        self, trial: optuna.Trial | None, metric: str, sign: float = 1.0, pause: bool = False
    ) -> None:
        self.trial = trial
        self.metric = metric
        self.sign = sign
        self.pause = pause
        self.pruned = False
        super().__init__()

    def evaluated(self, metrics: Metrics, state: RunState, control: Control, _: Model) -> None:
        self.count = self.index
        if self.trial is not None:
            self.trial.report(self.sign * _study_value(metrics, self.metric), self.count)
        # The last evaluation (the budget's end, or early stopping's): the trial has spent its
        # budget, so stopping it now saves nothing. It ends COMPLETE, never PRUNED. (The same on
        # every rank: the metrics are gathered from all of them.)
        if state.global_step >= state.max_steps or control.should_training_stop:
            return
        prune = self.trial is not None and self.trial.should_prune()
        if distributed.from_leader(prune, tag=("prune", self.count)):
            self.pruned = True
            control.should_training_stop = True
            control.should_save = self.pause  # saved by the Trainer right after this call


class LogitsKeeper:
    """A Trainer ``compute_metrics`` that also keeps the last evaluation's logits (one row per
    validation row, in the split's order), for :class:`BestSnapshot` to keep the best one's."""

    def __init__(self, compute_metrics: Callable[[EvalPrediction], dict[str, float]]) -> None:
        self.compute_metrics = compute_metrics
        self.last: npt.NDArray[np.float32] | None = None  # rows x labels

    def __call__(self, eval_prediction: EvalPrediction) -> dict[str, float]:
        import numpy as np

        logits = eval_prediction.predictions
        self.last = np.asarray(logits[0] if isinstance(logits, tuple) else logits, dtype=np.float32)
        return self.compute_metrics(eval_prediction)


class BestSnapshot(HarnessCallback):
    """Keeps the trainable weights of the best evaluation in memory (not on disk), and its
    validation logits (``logits``: the :class:`LogitsKeeper` of the Trainer's metrics).

    A trial's value is its best evaluation, not its last; :meth:`restore` puts those weights
    back so that the saved checkpoint is the one that scored it. The logits are what the final
    stage combines models by, with no inference again (``harness.study.combine``).
    """

    def __init__(self, metric: str, direction: str, logits: LogitsKeeper | None = None) -> None:
        self.metric = metric
        self.direction = direction
        self.value: float | None = None
        self.metrics: dict[str, float] = {}
        self.step = 0  # the global step of the best evaluation
        self.evaluations = 0  # the index of the last evaluation (evaluation_index)
        self.logits_keeper = logits
        self.logits: npt.NDArray[np.float32] | None = None  # the best evaluation's, if kept
        self._weights: dict[str, torch.Tensor] = {}
        self._capture_at_start = False  # restored: the best weights are the ones resumed from

    def state(self) -> State:
        return {
            "value": self.value,
            "metrics": self.metrics,
            "step": self.step,
            "evaluations": self.evaluations,
        }

    def load_state(
        self,
        state: State,
        weights: dict[str, torch.Tensor] | None,
        logits: npt.NDArray[np.float32] | None = None,
    ) -> None:
        """The snapshot of a paused run: its best weights, or (None) the weights the run
        resumes from, when its best evaluation was the one it paused at; its best logits."""
        self.value, self.metrics = state["value"], dict(state["metrics"])
        self.logits = logits
        self.step, self.evaluations = int(state["step"]), int(state["evaluations"])
        self._weights = dict(weights or {})
        self._capture_at_start = weights is None and self.value is not None

    def weights(self) -> dict[str, torch.Tensor]:
        """The best evaluation's trainable weights (name -> tensor)."""
        return self._weights

    def on_train_begin(
        self,
        args: Args,
        state: RunState,
        control: Control,
        model: torch.nn.Module | None = None,
        **kwargs: object,
    ) -> None:
        if self._capture_at_start and model is not None:  # the Trainer has loaded them by now
            self._capture(model)
        self._capture_at_start = False

    def _capture(self, model: torch.nn.Module) -> None:
        self._weights = {
            name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad
        }

    def evaluated(self, metrics: Metrics, state: RunState, control: Control, model: Model) -> None:
        self.evaluations = self.index
        value = _study_value(metrics, self.metric)
        if not is_better(value, self.value, self.direction):
            return
        self.value, self.step = value, state.global_step
        self.metrics = {
            k.removeprefix("eval_"): float(v)
            for k, v in metrics.items()
            if k.startswith("eval_") and k not in _SKIP and isinstance(v, int | float)
        }
        if model is not None:
            self._capture(model)
        if self.logits_keeper is not None:
            self.logits = self.logits_keeper.last

    def restore(self, model: torch.nn.Module) -> None:
        import torch

        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, saved in self._weights.items():
                params[name].copy_(saved)


class MetricsLogger(HarnessCallback):
    """Forwards Trainer logs as metric histories: ``val_*``, ``train_loss``, ``learning_rate``."""

    def __init__(self, log: Callable[[dict[str, float], int], None]) -> None:
        self.log = log

    def on_log(
        self,
        args: Args,
        state: RunState,
        control: Control,
        logs: dict[str, float] | None = None,
        **kwargs: object,
    ) -> None:
        logs = logs or {}
        if "train_runtime" in logs:  # the end-of-training summary, not a point on the curves
            return
        out: dict[str, float] = {}
        for key, value in logs.items():
            if key in _SKIP or not isinstance(value, int | float):
                continue
            if key.startswith("eval_"):
                out["val_" + key.removeprefix("eval_")] = float(value)
            elif key == "loss":
                out["train_loss"] = float(value)
            else:
                out[key] = float(value)
        if out:
            self.log(out, state.global_step)


class EarlyStopping(HarnessCallback):
    """Stops a trial after ``patience`` evaluations without improving the study metric by more
    than ``threshold`` (the classic BERT recipe), independent of the study's pruner."""

    def __init__(self, metric: str, direction: str, patience: int, threshold: float = 0.0) -> None:
        self.metric, self.direction = metric, direction
        self.patience, self.threshold = patience, threshold
        self.best: float | None = None
        self.bad_evaluations = 0
        self.stopped_epoch: float | None = None  # epoch at which training was stopped

    def state(self) -> State:
        return {"best": self.best, "bad_evaluations": self.bad_evaluations}

    def load_state(self, state: State) -> None:
        self.best, self.bad_evaluations = state["best"], int(state["bad_evaluations"])

    def evaluated(self, metrics: Metrics, state: RunState, control: Control, _: Model) -> None:
        value = _study_value(metrics, self.metric)
        margin = self.threshold if self.direction == "maximize" else -self.threshold
        if self.best is None or is_better(value - margin, self.best, self.direction):
            self.best, self.bad_evaluations = value, 0
            return
        self.bad_evaluations += 1
        if self.bad_evaluations >= self.patience and not control.should_training_stop:
            control.should_training_stop = True
            self.stopped_epoch = float(state.epoch or 0.0)


class EvaluateAtEnd(HarnessCallback):
    """Evaluates after the last step when it does not fall on an evaluation step."""

    def on_step_end(self, args: Args, state: RunState, control: Control, **_: object) -> None:
        if state.global_step >= state.max_steps and state.global_step % args.eval_steps != 0:
            control.should_evaluate = True


class EvaluationSchedule(HarnessCallback):
    """``train.evaluate_from``: skips the scheduled evaluations before that fraction of the
    training (evaluation k of n when k / n < evaluate_from), except the ones a pruner decides
    at (``decisions``, evaluation indexes; None: it may decide at any, so none is skipped). The
    budget's last evaluation always runs.

    A fine-tune's best evaluation comes late (in the last 40 % of the budget in 138 of 144
    trials of the default sweeps, docs/benchmarks.md "Evaluations"), and on a CPU evaluations
    are a third of a trial's time: skipping the early ones drops points of the curve, not the
    trial's best evaluation (as a rule) or the pruner's decisions.
    """

    def __init__(self, evaluate_from: float, decisions: Collection[int] | None) -> None:
        self.evaluate_from = evaluate_from
        self.decisions = None if decisions is None else frozenset(decisions)

    def skips(self, index: int, total: int) -> bool:
        """Is evaluation ``index`` of ``total`` skipped?"""
        if self.decisions is None or index >= total or index in self.decisions:
            return False
        return index < self.evaluate_from * total - 1e-9  # k / n < from, exact at k / n == from

    def on_step_end(self, args: Args, state: RunState, control: Control, **_: object) -> None:
        if not control.should_evaluate:
            return
        steps = int(args.eval_steps)
        index = evaluation_index(int(state.global_step), steps)
        if self.skips(index, evaluation_index(int(state.max_steps), steps)):
            control.should_evaluate = False


class StopWhen(HarnessCallback):
    """Stops training at the next step once ``stop()`` is true (e.g. the trial was taken over)."""

    def __init__(self, stop: Callable[[], bool]) -> None:
        self.stop = stop

    def on_step_end(self, args: Args, state: RunState, control: Control, **_: object) -> None:
        if self.stop():
            control.should_training_stop = True


class SaveOnSignal(HarnessCallback):
    """``study.resume_trials``: once a signal has arrived (``pending()`` is not None: the
    signals wait in :func:`harness.base.interrupts.deferred` meanwhile), training stops after
    the current optimizer step with the Trainer's full state saved (``should_save``), for the
    next run to continue from; :attr:`stopped` says it did.

    At a step that evaluates, it waits for the evaluation and the pruner (its ``evaluated``
    runs after theirs): a trial pruned, paused or stopped early there ends as such, and the
    pending signal stops the sweep after its record. At the budget's last step it does
    nothing: the trial completes.
    """

    def __init__(self, pending: Callable[[], object]) -> None:
        self.pending = pending
        self.stopped = False

    def on_step_end(self, args: Args, state: RunState, control: Control, **_: object) -> None:
        if not control.should_evaluate:  # else: after the evaluation (evaluated)
            self._stop(control)

    def evaluated(self, metrics: Metrics, state: RunState, control: Control, _: Model) -> None:
        self._stop(control)

    def _stop(self, control: Control) -> None:
        if self.pending() is None or control.should_training_stop or self.stopped:
            return
        self.stopped = True
        control.should_save = True  # the Trainer saves its state right after this call
        control.should_training_stop = True


class OnEvaluate(EvaluationCounter):
    """Calls ``fn(index, metrics)`` after every evaluation (progress display); ``index`` is the
    evaluation's :func:`evaluation_index`."""

    def __init__(self, fn: Callable[[int, dict[str, float]], None]) -> None:
        self.fn = fn
        super().__init__()

    def evaluated(self, metrics: Metrics, state: RunState, control: Control, _: Model) -> None:
        self.count = self.index
        self.fn(self.count, metrics)
