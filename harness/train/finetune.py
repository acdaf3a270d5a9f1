"""One fine-tune: a fresh model (+ adapter) → HF Trainer → the best validation score.

This module knows nothing about Optuna studies or MLflow runs: the caller passes callbacks
(pruning, metric logging, progress) and gets a :class:`FinetuneResult` back. It imports
transformers (through the callbacks): its callers import it where a trial starts, not at the top
of the CLI's path.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from harness.base import faults, interrupts
from harness.train.arguments import harness_options, training_arguments
from harness.train.callbacks import BestSnapshot, EarlyStopping, EvaluateAtEnd, PruningCallback
from harness.train.checkpoints import save_checkpoint
from harness.train.compute import ComputeMeter
from harness.train.model import BaseModel, build_trial_model, count_parameters


@dataclass
class FinetuneResult:
    value: float | None  # best validation value of the study metric (None: never evaluated)
    best_metrics: dict[str, float]  # all validation metrics of that evaluation
    best_step: int
    evaluations: int
    pruned: bool
    train_runtime: float  # seconds inside Trainer.train (training and evaluation)
    trainable_params: int
    total_params: int
    epochs: float = 0.0  # epochs trained (fewer than configured when stopped early or pruned)
    steps: int = 0  # optimizer steps trained
    stopped_epoch: float | None = None  # where early stopping ended the trial (None: it did not)
    checkpoint: Path | None = None

    @property
    def trainable_ratio(self) -> float:
        return self.trainable_params / self.total_params if self.total_params else 0.0


def finetune(
    trial_cfg: DictConfig,
    base: BaseModel,
    datasets: Any,
    compute_metrics: Any,
    callbacks: list[Any] = (),
    checkpoint_dir: Path | None = None,
    keep_checkpoint: Callable[[float], bool] | None = None,
    trainer_bars: bool = False,
) -> FinetuneResult:
    """Fine-tune a fresh copy of ``base`` on ``datasets`` (tokenized train / validation).

    ``callbacks`` are extra TrainerCallbacks; a :class:`~harness.callbacks.PruningCallback`
    among them stops the run early (``result.pruned``). For a run that was not pruned and
    ``checkpoint_dir`` given, the weights of the best evaluation are saved there (unless
    ``keep_checkpoint(best value)`` says they would not be kept).
    """
    from transformers import DataCollatorWithPadding, PrinterCallback


    study = trial_cfg.study
    snapshot = BestSnapshot(study.metric, study.direction)
    own = harness_options(trial_cfg.train)
    stopper = None
    if own.early_stopping_patience:
        stopper = EarlyStopping(study.metric, study.direction, own.early_stopping_patience,
                                own.early_stopping_threshold)
    model = build_trial_model(base, trial_cfg.peft, int(trial_cfg.train.seed))
    trainable, total = count_parameters(model)
    with tempfile.TemporaryDirectory(prefix="harness-trainer-") as scratch:
        args = training_arguments(trial_cfg.train, len(datasets["train"]), scratch, trainer_bars)
        trainer = _trainer_class()(
            model=model,
            args=args,
            train_dataset=datasets["train"],
            eval_dataset=datasets["validation"],
            processing_class=base.tokenizer,
            data_collator=DataCollatorWithPadding(base.tokenizer),
            compute_metrics=compute_metrics,
            callbacks=[snapshot, EvaluateAtEnd(), *([stopper] if stopper else []), *callbacks],
        )
        trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout
        output = trainer.train()
    pruned = any(isinstance(c, PruningCallback) and c.pruned for c in callbacks)
    result = FinetuneResult(
        value=snapshot.value,
        best_metrics=snapshot.metrics,
        best_step=snapshot.step,
        evaluations=snapshot.evaluations,
        pruned=pruned,
        train_runtime=float(output.metrics.get("train_runtime", 0.0)),
        trainable_params=trainable,
        total_params=total,
        epochs=float(trainer.state.epoch or 0.0),
        steps=int(trainer.state.global_step),
        stopped_epoch=stopper.stopped_epoch if stopper else None,
    )
    if (not pruned and checkpoint_dir is not None and snapshot.value is not None
            and (keep_checkpoint is None or keep_checkpoint(snapshot.value))):
        snapshot.restore(model)
        save_checkpoint(model, base.tokenizer, checkpoint_dir)
        result.checkpoint = checkpoint_dir
    del trainer, model
    return result


class NonFiniteLoss(FloatingPointError):
    """The training loss became NaN or infinite: the trial fails at that step."""


def _trainer_class() -> type:
    import torch
    from torch.utils.data import SequentialSampler
    from transformers import Trainer

    class HarnessTrainer(Trainer):
        """The HF Trainer, plus: a NaN or infinite training loss fails the trial at the step it
        appears (HF would only filter it out of the logged average), and validation splits are
        evaluated in their own order: they come sorted by length, so batches pad to almost
        nothing (group_by_length would shuffle them again)."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            interrupts.check()
            out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if not model.training:
                return out
            loss = out[0] if return_outputs else out
            if faults.hit("train_step") == "nan":
                loss = loss * float("nan")
                out = (loss, out[1]) if return_outputs else loss
            if not torch.isfinite(loss.detach()).all():
                step = self.state.global_step + 1
                raise NonFiniteLoss(
                    f"training loss became {loss.detach().float().mean().item()} at step {step} "
                    f"(epoch {self.state.epoch or 0.0:.2f}): lower the learning rate, or clip "
                    "gradients harder (train.max_grad_norm)"
                )
            return out

        def evaluate(self, *args, **kwargs):
            meters = [c for c in self.callback_handler.callbacks if isinstance(c, ComputeMeter)]
            for meter in meters:
                meter.evaluation_started()
            try:
                return super().evaluate(*args, **kwargs)
            finally:
                for meter in meters:
                    meter.evaluation_ended()

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            faults.hit("evaluate")
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)

        def _get_eval_sampler(self, eval_dataset: Any) -> Any:
            return SequentialSampler(eval_dataset)

    return HarnessTrainer
