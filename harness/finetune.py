"""One fine-tune: a fresh model (+ adapter) → HF Trainer → the best validation score.

This module knows nothing about Optuna studies or MLflow runs: the caller passes callbacks
(pruning, metric logging, progress) and gets a :class:`FinetuneResult` back.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from harness import faults, interrupts
from harness.errors import ConfigError, first_line
from harness.model import BaseModel, build_trial_model, count_parameters

# TrainingArguments the harness sets itself (evaluation cadence, no checkpoints of its own,
# no reporting integrations: tracking is the harness's job).
OWNED_ARGS = (
    "output_dir", "eval_strategy", "eval_steps", "logging_strategy", "logging_steps",
    "save_strategy", "report_to", "disable_tqdm", "load_best_model_at_end",
)
# Keys of `train` that are the harness's, not TrainingArguments'.
HARNESS_KEYS = ("evals_per_epoch", "early_stopping_patience", "early_stopping_threshold",
                "mixed_precision")
MIXED_PRECISION = ("auto", "bf16", "fp16", "no")


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


def steps_per_epoch(train_cfg: DictConfig, train_size: int) -> int:
    batches = math.ceil(train_size / int(train_cfg.per_device_train_batch_size))
    return max(1, batches // int(train_cfg.get("gradient_accumulation_steps", 1) or 1))


def harness_options(train_cfg: DictConfig) -> dict[str, Any]:
    """The harness's own keys of ``train``, checked."""
    evals = train_cfg.get("evals_per_epoch", 4)
    if isinstance(evals, bool) or not isinstance(evals, int) or evals < 1:
        raise ConfigError("train.evals_per_epoch", f"must be an integer >= 1, got {evals!r}")
    patience = train_cfg.get("early_stopping_patience")
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int)
                                 or patience < 1):
        raise ConfigError("train.early_stopping_patience",
                          f"must be a positive integer (evaluations) or null, got {patience!r}")
    threshold = train_cfg.get("early_stopping_threshold", 0.0) or 0.0
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or threshold < 0:
        raise ConfigError("train.early_stopping_threshold",
                          f"must be a number >= 0, got {threshold!r}")
    precision = train_cfg.get("mixed_precision", "auto") or "no"
    if precision not in MIXED_PRECISION:
        raise ConfigError("train.mixed_precision",
                          f"must be one of {', '.join(MIXED_PRECISION)}, got {precision!r}")
    if precision != "auto" and (train_cfg.get("bf16") or train_cfg.get("fp16")):
        raise ConfigError("train.mixed_precision",
                          "set either train.mixed_precision or train.bf16 / train.fp16, not both")
    return {"evals_per_epoch": evals, "early_stopping_patience": patience,
            "early_stopping_threshold": float(threshold), "mixed_precision": precision}


def precision_args(precision: str, train_cfg: DictConfig) -> dict[str, bool]:
    """TrainingArguments' bf16 / fp16 for ``train.mixed_precision``: auto is bf16 on a GPU that
    supports it, fp16 on other GPUs, full precision on CPU (unless train.bf16/fp16 say so)."""
    if precision == "auto":
        if train_cfg.get("bf16") or train_cfg.get("fp16"):
            return {}
        import torch

        if not torch.cuda.is_available():
            return {}
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    elif precision != "no":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("train.mixed_precision",
                              f"{precision} needs a GPU (none is visible): use auto or no")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def training_arguments(
    train_cfg: DictConfig, train_size: int, output_dir: str, trainer_bars: bool = False
) -> Any:
    """``TrainingArguments`` from ``train`` plus the fields the harness owns.

    Raises :class:`ConfigError` naming the ``train.*`` field that TrainingArguments rejects.
    """
    from transformers import TrainingArguments

    kwargs = OmegaConf.to_container(train_cfg, resolve=True)
    own = harness_options(train_cfg)
    for key in HARNESS_KEYS:
        kwargs.pop(key, None)
    evals_per_epoch = own["evals_per_epoch"]
    for key in OWNED_ARGS:
        if key in kwargs:
            raise ConfigError(f"train.{key}", "is set by the harness; remove it from train")
    for key in ("per_device_train_batch_size", "per_device_eval_batch_size"):
        value = kwargs.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"train.{key}", f"must be a positive integer, got {value!r}")
    # Rounded up: the last evaluation of an epoch falls on (or just after) its last step.
    eval_steps = max(1, math.ceil(steps_per_epoch(train_cfg, train_size) / evals_per_epoch))
    try:
        return TrainingArguments(
            output_dir=output_dir,
            eval_strategy="steps",
            eval_steps=eval_steps,
            logging_strategy="steps",
            logging_steps=eval_steps,
            save_strategy="no",
            report_to="none",
            disable_tqdm=not trainer_bars,
            **{**kwargs, **precision_args(own["mixed_precision"], train_cfg)},
        )
    except TypeError as exc:
        import dataclasses

        known = {f.name for f in dataclasses.fields(TrainingArguments)}
        unknown = [k for k in kwargs if k not in known]
        field_name = f"train.{unknown[0]}" if unknown else "train"
        raise ConfigError(
            field_name, "is not an argument of transformers.TrainingArguments"
            if unknown else str(exc)
        ) from exc
    except ValueError as exc:
        raise ConfigError("train", first_line(exc)) from exc


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

    from harness.callbacks import BestSnapshot, EarlyStopping, EvaluateAtEnd, PruningCallback

    study = trial_cfg.study
    snapshot = BestSnapshot(study.metric, study.direction)
    own = harness_options(trial_cfg.train)
    stopper = None
    if own["early_stopping_patience"]:
        stopper = EarlyStopping(study.metric, study.direction, own["early_stopping_patience"],
                                own["early_stopping_threshold"])
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

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            faults.hit("evaluate")
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)

        def _get_eval_sampler(self, eval_dataset: Any) -> Any:
            return SequentialSampler(eval_dataset)

    return HarnessTrainer


def save_checkpoint(model: Any, tokenizer: Any, path: Path) -> None:
    """Weights (or adapter), tokenizer and label map: what transformers / peft load back.

    A peft checkpoint also keeps the model config (with the label names) beside the adapter.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    faults.hit("checkpoint")
    config = getattr(model, "get_base_model", lambda: model)().config
    config.save_pretrained(path)
    tokenizer.save_pretrained(path)
    labels = {"id2label": {int(k): v for k, v in config.id2label.items()}}
    (path / "labels.json").write_text(json.dumps(labels, indent=2) + "\n")
