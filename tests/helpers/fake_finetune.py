"""A scripted fake fine-tune: the fast tier's stand-in for :func:`harness.train.finetune.finetune`.

It has the real one's signature (:class:`harness.study.objective.FineTune`) and drives the
callbacks a trial gives it the way the HF Trainer does (transformers' own ``CallbackHandler``,
``DefaultFlowCallback``, ``TrainerState`` and ``TrainerControl``, the real ``TrainingArguments``
of the trial, the harness's ``BestSnapshot``, ``EvaluateAtEnd`` and ``EarlyStopping``), so that
the pruner, the MLflow curves, the compute figures and ``steps_trained`` are the real ones. What
it does not do is train: no forward pass, no optimizer. Its validation scores come from a
script, ``curve(trial_cfg, evaluation, evaluations) -> accuracy``; the logits it reports give
exactly that accuracy (and the configured metrics are computed from them by the study's own
metric suite), so ensembles and the final stage see coherent numbers. A checkpoint is the real
tiny trial model, saved by the harness's ``save_checkpoint`` (so the final stage scores the test
split and an export loads it back); a pause writes a state a continuation resumes from.

A trial runs in milliseconds. ``on_step(trial_cfg, step)`` is called at every step: raise or
hang on cue (:func:`raise_at`, :func:`hang_at`). The real fault points ``train_step``
(``nan`` included), ``evaluate``, ``checkpoint`` and ``pause_state`` are hit where the real
fine-tune hits them, and the interruption check runs at every step, as the real Trainer's does.

``tests/study/test_fast_fake.py`` checks the fake against the real fine-tune: the same config
gives the same records (metric, param, tag and artifact names) on both.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from harness.base import faults, interrupts

# (trial config, evaluation index from 1, evaluations of the full budget) -> the study value
Curve = Callable[[DictConfig, int, int], float]
StepHook = Callable[[DictConfig, int], None]  # (trial config, global step) at every step


def lr_curve(trial_cfg: DictConfig, evaluation: int, evaluations: int) -> float:
    """The default script: a higher learning rate learns more (1e-4 → nothing, 1 → all),
    every curve rising to its end; the seed moves the value a little (final-stage seeds)."""
    lr = float(OmegaConf.select(trial_cfg, "train.learning_rate", default=1e-3))
    quality = min(1.0, max(0.0, (math.log10(lr) + 4.0) / 4.0))
    seed = int(OmegaConf.select(trial_cfg, "train.seed", default=0) or 0)
    jitter = 0.01 * ((seed * 7919) % 5 - 2) / 2
    return min(1.0, max(0.0, 0.4 + 0.5 * quality * evaluation / evaluations + jitter))


def raise_at(
    step: int, error: BaseException, when: Callable[[DictConfig], bool] = lambda cfg: True
) -> StepHook:
    """A step hook that raises ``error`` at ``step`` of the trials ``when`` picks."""

    def hook(trial_cfg: DictConfig, global_step: int) -> None:
        if global_step == step and when(trial_cfg):
            raise error

    return hook


def hang_at(
    step: int, seconds: float, when: Callable[[DictConfig], bool] = lambda cfg: True
) -> StepHook:
    """A step hook that hangs ``seconds`` at ``step`` (a signal still interrupts it)."""

    def hook(trial_cfg: DictConfig, global_step: int) -> None:
        if global_step == step and when(trial_cfg):
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                interrupts.check()
                time.sleep(0.02)

    return hook


@dataclass
class FakeCall:
    """One fine-tune the fake was asked for, and what it returned."""

    trial_cfg: DictConfig
    result: Any  # harness.train.finetune.FinetuneResult
    resumed: bool


@dataclass
class FakeFineTune:
    """Call it as :func:`harness.train.finetune.finetune` (see the module)."""

    curve: Curve = lr_curve
    on_step: StepHook | None = None
    calls: list[FakeCall] = field(default_factory=list)  # the fine-tunes that returned
    started: int = 0  # fine-tunes started (failed ones too)
    _counts: dict[str, tuple[int, int]] = field(default_factory=dict)

    def __call__(
        self,
        trial_cfg: DictConfig,
        base: Any,
        datasets: Any,
        compute_metrics: Any,
        callbacks: list[Any] = (),  # type: ignore[assignment]
        checkpoint_dir: Path | None = None,
        keep_checkpoint: Callable[[float], bool] | None = None,
        trainer_bars: bool = False,
        pause_to: Path | None = None,
        resume_from: Path | None = None,
        init_seed: int | None = None,
        decisions: Any = None,
    ) -> Any:
        from transformers import EvalPrediction, TrainerControl, TrainerState
        from transformers.trainer_callback import CallbackHandler, DefaultFlowCallback

        from harness.train.arguments import harness_options, training_arguments
        from harness.train.callbacks import (
            BestSnapshot,
            EarlyStopping,
            EvaluateAtEnd,
            EvaluationSchedule,
            LogitsKeeper,
            PruningCallback,
            SaveOnSignal,
        )
        from harness.train.finetune import FinetuneResult, NonFiniteLoss

        self.started += 1
        started = time.perf_counter()
        study = trial_cfg.study
        keeper = LogitsKeeper(compute_metrics)
        snapshot = BestSnapshot(study.metric, study.direction, keeper)
        own = harness_options(trial_cfg.train)
        stopper = None
        if own.early_stopping_patience:
            stopper = EarlyStopping(
                study.metric,
                study.direction,
                own.early_stopping_patience,
                own.early_stopping_threshold,
            )
        stateful = [snapshot, *([stopper] if stopper else []), *callbacks]
        resumed = 0 if resume_from is None else _load_pause(Path(resume_from), stateful)
        labels = np.asarray(datasets["validation"]["label"])
        num_labels = len(getattr(base.model.config, "id2label", {}) or {}) or 2
        trainable, total = self._count(base, trial_cfg, init_seed)
        with tempfile.TemporaryDirectory(prefix="harness-fake-") as scratch:
            args = training_arguments(trial_cfg.train, len(datasets["train"]), scratch)
            per_epoch = _steps_per_epoch(args, len(datasets["train"]))
            max_steps = (
                int(args.max_steps)
                if args.max_steps > 0
                else int(math.ceil(float(args.num_train_epochs) * per_epoch))
            )
            evaluations = max(1, math.ceil(max_steps / int(args.eval_steps)))
            handler = CallbackHandler(
                [
                    DefaultFlowCallback(),
                    EvaluationSchedule(own.evaluate_from, None if stopper else decisions),
                    snapshot,
                    EvaluateAtEnd(),
                    *([stopper] if stopper else []),
                    *callbacks,
                ],
                None,
                base.tokenizer,
                None,
                None,
            )
            state = TrainerState(
                max_steps=max_steps,
                logging_steps=int(args.logging_steps),
                eval_steps=int(args.eval_steps),
                num_train_epochs=int(math.ceil(max_steps / per_epoch)),
                train_batch_size=int(args.per_device_train_batch_size),
            )
            state.global_step, state.epoch = resumed, resumed / per_epoch
            control = TrainerControl()
            control = handler.on_train_begin(args, state, control)
            saved_at = None
            while state.global_step < max_steps and not control.should_training_stop:
                epoch_start = state.global_step - state.global_step % per_epoch
                control = handler.on_epoch_begin(args, state, control)
                while state.global_step < min(epoch_start + per_epoch, max_steps):
                    control = handler.on_step_begin(args, state, control)
                    interrupts.check()
                    if self.on_step is not None:
                        self.on_step(trial_cfg, state.global_step + 1)
                    if faults.hit("train_step") == "nan":
                        raise NonFiniteLoss(
                            f"training loss became nan at step {state.global_step + 1} "
                            f"(epoch {state.epoch or 0.0:.2f}): lower the learning rate, or "
                            "clip gradients harder (train.max_grad_norm)"
                        )
                    state.global_step += 1
                    state.epoch = state.global_step / per_epoch
                    state.total_flos += 1.0e6 * args.per_device_train_batch_size
                    control = handler.on_step_end(args, state, control)
                    if control.should_log:
                        logs = {
                            "loss": 1.0 / (1.0 + state.global_step),
                            "grad_norm": 1.0,
                            "learning_rate": float(args.learning_rate),
                            "epoch": state.epoch,
                        }
                        control = handler.on_log(args, state, control, logs=logs)
                    if control.should_evaluate:
                        evaluated = math.ceil(state.global_step / int(args.eval_steps))
                        value = self.curve(trial_cfg, evaluated, evaluations)
                        faults.hit("evaluate")
                        logits = _logits(labels, num_labels, value)
                        scored = keeper(EvalPrediction(predictions=logits, label_ids=labels))
                        metrics = {f"eval_{k}": v for k, v in scored.items()}
                        metrics.update(
                            eval_loss=1.1 - value,
                            eval_runtime=0.001,
                            eval_samples_per_second=1000.0,
                            eval_steps_per_second=100.0,
                            epoch=state.epoch,
                        )
                        control = handler.on_log(args, state, control, logs=dict(metrics))
                        control = handler.on_evaluate(args, state, control, metrics=metrics)
                    if control.should_save:
                        saved_at = state.global_step
                        control = handler.on_save(args, state, control)
                    if control.should_training_stop:
                        break
                control = handler.on_epoch_end(args, state, control)
            runtime = time.perf_counter() - started
            handler.on_log(
                args,
                state,
                control,
                logs={"train_runtime": runtime, "train_loss": 0.5, "epoch": state.epoch},
            )
            control = handler.on_train_end(args, state, control)
        pruned = any(isinstance(c, PruningCallback) and c.pruned for c in callbacks)
        paused = pruned and pause_to is not None and saved_at == state.global_step
        stopped = any(isinstance(c, SaveOnSignal) and c.stopped for c in callbacks)
        interrupted = (
            stopped and not pruned and pause_to is not None and saved_at == state.global_step
        )
        if (paused or interrupted) and pause_to is not None:
            _save_pause(Path(pause_to), stateful, snapshot, state.global_step)
        result = FinetuneResult(
            value=snapshot.value,
            best_metrics=snapshot.metrics,
            best_step=snapshot.step,
            evaluations=max(snapshot.evaluations, state.global_step // int(args.eval_steps)),
            pruned=pruned,
            train_runtime=runtime,
            trainable_params=trainable,
            total_params=total,
            epochs=float(state.epoch or 0.0),
            steps=state.global_step - resumed,
            stopped_epoch=stopper.stopped_epoch if stopper else None,
            paused=paused,
            interrupted=interrupted,
            resumed_step=resumed,
        )
        if (
            not pruned
            and not interrupted
            and checkpoint_dir is not None
            and snapshot.value is not None
            and (keep_checkpoint is None or keep_checkpoint(snapshot.value))
        ):
            from harness.train.checkpoints import save_checkpoint
            from harness.train.model import build_trial_model

            seed = int(trial_cfg.train.seed) if init_seed is None else int(init_seed)
            model = build_trial_model(base, trial_cfg.peft, seed)
            save_checkpoint(model, base.tokenizer, Path(checkpoint_dir), snapshot.logits)
            result.checkpoint = Path(checkpoint_dir)
        self.calls.append(FakeCall(trial_cfg, result, resume_from is not None))
        return result

    def _count(self, base: Any, trial_cfg: DictConfig, init_seed: int | None) -> tuple[int, int]:
        """(trainable, total) parameters of the trial's model, counted once per method."""
        from harness.train.model import build_trial_model, count_parameters

        key = OmegaConf.to_yaml(trial_cfg.peft, resolve=True)
        if key not in self._counts:
            self._counts[key] = count_parameters(
                build_trial_model(base, trial_cfg.peft, int(trial_cfg.train.seed))
            )
        return self._counts[key]


def _steps_per_epoch(args: Any, train_size: int) -> int:
    # as the Trainer counts (harness.train.arguments.steps_per_epoch): a partial accumulation
    # window at the epoch's end is a step
    batches = math.ceil(train_size / int(args.per_device_train_batch_size))
    return max(1, math.ceil(batches / max(1, int(args.gradient_accumulation_steps))))


def _logits(labels: np.ndarray, num_labels: int, accuracy: float) -> np.ndarray:
    """Validation logits whose argmax is right on exactly round(accuracy * rows) rows (the
    first ones in a fixed shuffled order, so better models are right where worse ones are)."""
    rows = len(labels)
    right = np.zeros(rows, dtype=bool)
    order = np.random.default_rng(0).permutation(rows)
    right[order[: round(accuracy * rows)]] = True
    predicted = np.where(right, labels, (labels + 1) % num_labels)
    logits = np.zeros((rows, num_labels), dtype=np.float32)
    logits[np.arange(rows), predicted] = 2.0
    return logits


HARNESS_STATE = "harness.json"  # the real fine-tune's name for the callbacks' state


def _save_pause(target: Path, stateful: list[Any], snapshot: Any, step: int) -> None:
    """A paused run's state, laid out as the real one's (a Trainer part, then the callbacks')."""
    from harness.train.checkpoints import save_logits

    (target / "trainer").mkdir(parents=True, exist_ok=True)
    (target / "trainer" / "fake.json").write_text(json.dumps({"step": step}) + "\n")
    faults.hit("pause_state")
    states = {type(c).__name__: c.state() for c in stateful if hasattr(c, "state")}
    if snapshot.logits is not None:
        save_logits(snapshot.logits, target)
    (target / HARNESS_STATE).write_text(json.dumps({"step": step, "callbacks": states}) + "\n")


def _load_pause(state: Path, stateful: list[Any]) -> int:
    """The callbacks' state of a paused run; returns the step it paused at."""
    from harness.train.callbacks import BestSnapshot
    from harness.train.checkpoints import load_logits

    saved = json.loads((state / HARNESS_STATE).read_text())
    for callback in stateful:
        name = type(callback).__name__
        if name not in saved["callbacks"] or not hasattr(callback, "load_state"):
            continue
        if isinstance(callback, BestSnapshot):
            callback.load_state(saved["callbacks"][name], None, load_logits(state))
        else:
            callback.load_state(saved["callbacks"][name])
    return int(saved["step"])
