"""One fine-tune: a fresh model (+ adapter) → HF Trainer → the best validation score.

This module knows nothing about Optuna studies or MLflow runs: the caller passes callbacks
(pruning, metric logging, progress) and gets a :class:`FinetuneResult` back. It imports
transformers (through the callbacks): its callers import it where a trial starts, not at the top
of the CLI's path.

A fine-tune can be paused at an evaluation and continued later, in another process, to the
same weights an uninterrupted run reaches (the promotion scheduler's pause): ``pause_to`` is
where a stopped run writes its full training state, ``resume_from`` a state to continue::

    <state>/trainer/          the Trainer's checkpoint: weights or adapter, optimizer, scheduler,
                              RNG states, step and curve so far (trainer_state.json)
    <state>/harness.json      the harness callbacks' state (best so far, evaluations, early stop)
    <state>/best.safetensors  the best evaluation's trainable weights, when it was not the last
    <state>/val_logits.npy    the best evaluation's validation logits

The data order is a function of the seed and the epoch only (:func:`_trainer_class`), so a
resumed run sees the batches the uninterrupted one would.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from harness.base import distributed, faults, interrupts
from harness.base.errors import ConfigError
from harness.train.arguments import harness_options, refuse_data_parallel, training_arguments
from harness.train.callbacks import (
    BestSnapshot,
    EarlyStopping,
    EvaluateAtEnd,
    EvaluationSchedule,
    LogitsKeeper,
    PruningCallback,
    SaveOnSignal,
)
from harness.train.checkpoints import load_logits, save_checkpoint, save_logits
from harness.train.compute import ComputeMeter
from harness.train.dropout import use_fast_cpu_dropout
from harness.train.model import BaseModel, build_trial_model, count_parameters
from harness.train.optimizer import lr_scales, parameter_groups, reinit_top_layers

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict
    from transformers import Trainer, TrainerCallback

    from harness.metrics import MetricSuite


@dataclass
class FinetuneResult:
    value: float | None  # best validation value of the study metric (None: never evaluated)
    best_metrics: dict[str, float]  # all validation metrics of that evaluation
    best_step: int
    evaluations: int  # the index of the last evaluation reached (run, or skipped: evaluation_index)
    pruned: bool
    train_runtime: float  # seconds inside Trainer.train (training and evaluation)
    trainable_params: int
    total_params: int
    epochs: float = 0.0  # epochs trained (fewer than configured when stopped early or pruned)
    steps: int = 0  # optimizer steps trained
    stopped_epoch: float | None = None  # where early stopping ended the trial (None: it did not)
    checkpoint: Path | None = None
    paused: bool = False  # stopped at a rung with its training state written to ``pause_to``
    # stopped by a signal (SaveOnSignal) with its training state written to ``pause_to``
    interrupted: bool = False
    resumed_step: int = 0  # the global step a continued run resumed at (0: a fresh run)

    @property
    def trainable_ratio(self) -> float:
        return self.trainable_params / self.total_params if self.total_params else 0.0


def finetune(
    trial_cfg: DictConfig,
    base: BaseModel,
    datasets: DatasetDict,
    compute_metrics: MetricSuite,
    callbacks: Sequence[TrainerCallback] = (),
    checkpoint_dir: Path | None = None,
    keep_checkpoint: Callable[[float], bool] | None = None,
    trainer_bars: bool = False,
    pause_to: Path | None = None,
    resume_from: Path | None = None,
    init_seed: int | None = None,
    decisions: Collection[int] | None = None,
) -> FinetuneResult:
    """Fine-tune a fresh copy of ``base`` on ``datasets`` (tokenized train / validation).

    ``callbacks`` are extra TrainerCallbacks; a :class:`~harness.train.callbacks.PruningCallback`
    among them stops the run early (``result.pruned``). For a run that was not pruned and
    ``checkpoint_dir`` given, the weights of the best evaluation are saved there (unless
    ``keep_checkpoint(best value)`` says they would not be kept). A pruned run with
    ``pause_to`` (its PruningCallback made with ``pause=True``) writes its training state there
    (``result.paused``), as does a run a :class:`~harness.train.callbacks.SaveOnSignal` stopped
    (``result.interrupted``); ``resume_from`` continues such a state (see the module).
    ``init_seed``: the seed of the adapter's (or re-initialised layers') initialisation when
    it is not ``train.seed``, which then sets dropout and the data order only.
    ``decisions``: the evaluations a pruner decides at (indexes 1, 2, …); the others before
    ``train.evaluate_from`` of the training are skipped (:class:`EvaluationSchedule`). None
    (the default): a pruner may decide at any, so every evaluation runs; so it does with early
    stopping, which counts evaluations.
    """
    from transformers import DataCollatorWithPadding, PrinterCallback

    study = trial_cfg.study
    metrics_and_logits = LogitsKeeper(compute_metrics)
    snapshot = BestSnapshot(study.metric, study.direction, metrics_and_logits)
    own = harness_options(trial_cfg.train)
    stopper = None
    if own.early_stopping_patience:
        stopper = EarlyStopping(
            study.metric, study.direction, own.early_stopping_patience, own.early_stopping_threshold
        )
    seed = int(trial_cfg.train.seed) if init_seed is None else int(init_seed)
    model = build_trial_model(base, trial_cfg.peft, seed)
    if own.reinit_layers:
        if trial_cfg.peft.get("config") is not None:
            raise ConfigError(
                "train.reinit_layers",
                "is for full fine-tuning: with an adapter the re-initialised layers stay frozen",
            )
        reinit_top_layers(model, own.reinit_layers)
    if own.cpu_dropout == "fast":
        use_fast_cpu_dropout(model)  # on the CPU only: elsewhere it is nn.Dropout
    trainable, total = count_parameters(model)
    stateful = [snapshot, *([stopper] if stopper else []), *callbacks]
    if resume_from is not None:
        _load_callback_states(Path(resume_from), stateful)
    with tempfile.TemporaryDirectory(prefix="harness-trainer-") as scratch:
        args = training_arguments(trial_cfg.train, len(datasets["train"]), scratch, trainer_bars)
        refuse_data_parallel(args)  # never nn.DataParallel by accident (harness.base.devices)
        trainer = _trainer_class()(
            model=model,
            args=args,
            train_dataset=datasets["train"],
            eval_dataset=datasets["validation"],
            processing_class=base.tokenizer,
            data_collator=DataCollatorWithPadding(base.tokenizer),
            compute_metrics=metrics_and_logits,
            callbacks=[
                # first: it may cancel an evaluation before the others see the step's end
                EvaluationSchedule(own.evaluate_from, None if stopper else decisions),
                snapshot,
                EvaluateAtEnd(),
                *([stopper] if stopper else []),
                *callbacks,
            ],
        )
        trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout
        _point_loggers(trainer, report_dir(trial_cfg, checkpoint_dir))
        if own.layer_lr_decay is not None or own.loraplus_lr_ratio is not None:
            trainer.lr_scales = lr_scales(model, own.layer_lr_decay, own.loraplus_lr_ratio)
        output = trainer.train(
            resume_from_checkpoint=None
            if resume_from is None
            else str(Path(resume_from) / TRAINER_STATE)
        )
        pruned = any(isinstance(c, PruningCallback) and c.pruned for c in callbacks)
        saved = Path(scratch) / f"checkpoint-{trainer.state.global_step}"
        paused = pruned and pause_to is not None and saved.is_dir()
        stopped = any(isinstance(c, SaveOnSignal) and c.stopped for c in callbacks)
        interrupted = stopped and not pruned and pause_to is not None and saved.is_dir()
        # every rank takes the pause together (rank 0's decision): its RNG state goes to rank 0
        pausing = pruned and any(isinstance(c, PruningCallback) and c.pause for c in callbacks)
        rank_states = _rank_rng_states(saved) if pausing else {}
        if (paused or interrupted) and pause_to is not None:
            _save_pause(
                saved, Path(pause_to), stateful, snapshot, trainer.state.global_step, rank_states
            )
    result = FinetuneResult(
        value=snapshot.value,
        best_metrics=snapshot.metrics,
        best_step=snapshot.step,
        # the last evaluation the run reached, run or skipped (train.evaluate_from)
        evaluations=max(snapshot.evaluations, trainer.state.global_step // int(args.eval_steps)),
        pruned=pruned,
        train_runtime=float(output.metrics.get("train_runtime", 0.0)),
        trainable_params=trainable,
        total_params=total,
        epochs=float(trainer.state.epoch or 0.0),
        steps=int(trainer.state.global_step) - _resumed_step(resume_from),
        stopped_epoch=stopper.stopped_epoch if stopper else None,
        paused=paused,
        interrupted=interrupted,
        resumed_step=_resumed_step(resume_from),
    )
    if (
        not pruned
        and not interrupted  # its state is saved: the continuation keeps its checkpoint
        and checkpoint_dir is not None
        and snapshot.value is not None
        and (keep_checkpoint is None or keep_checkpoint(snapshot.value))
    ):
        snapshot.restore(model)
        save_checkpoint(model, base.tokenizer, checkpoint_dir, snapshot.logits)
        result.checkpoint = checkpoint_dir
    del trainer, model
    return result


def report_dir(trial_cfg: DictConfig, checkpoint_dir: Path | None) -> Path:
    """Where a fine-tune's ``train.report_to`` loggers that write files (TensorBoard) write: a
    folder per trial beside the study's checkpoints, named as its checkpoint folder:
    ``<study.output_dir>/tensorboard/trial-N`` (the final stage's runs:
    ``<study.output_dir>/final/tensorboard/run-N``). ``checkpoint_dir`` is where the caller
    has the trial's checkpoint written (``<root>/.partial/<label>-<number>``); without one,
    ``<study.output_dir>/tensorboard/run``."""
    if checkpoint_dir is None:
        return Path(str(trial_cfg.study.output_dir)) / "tensorboard" / "run"
    checkpoint_dir = Path(checkpoint_dir)
    return checkpoint_dir.parent.parent / "tensorboard" / checkpoint_dir.name


def _point_loggers(trainer: Trainer, folder: Path) -> None:
    """The Trainer's TensorBoard logger (``train.report_to``) writes into ``folder``: by default
    it writes under the Trainer's output_dir, a scratch folder removed when the trial ends
    (transformers 5 has no ``logging_dir``; the callback reads TENSORBOARD_LOGGING_DIR once)."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            callback.logging_dir = str(folder)


TRAINER_STATE = "trainer"  # a paused state's Trainer checkpoint (see the module)
HARNESS_STATE = "harness.json"
BEST_WEIGHTS = "best.safetensors"


def _save_pause(
    checkpoint: Path,
    target: Path,
    stateful: list[TrainerCallback],
    snapshot: BestSnapshot,
    step: int,
    rank_states: dict[int, bytes],
) -> None:
    """A paused run's state into ``target`` (a fresh folder the caller commits once complete):
    the Trainer's checkpoint of the evaluation it paused at (with the other ranks' RNG states,
    ``rank_states``, under torchrun), then the callbacks' state."""
    from safetensors.torch import save_file

    target.mkdir(parents=True, exist_ok=True)
    shutil.move(str(checkpoint), str(target / TRAINER_STATE))
    for rank, state in rank_states.items():
        (target / TRAINER_STATE / f"rng_state_{rank}.pth").write_bytes(state)
    faults.hit("pause_state")
    states = {type(c).__name__: c.state() for c in stateful if hasattr(c, "state")}
    if snapshot.value is not None and snapshot.step != step:  # else: the weights just saved
        save_file(
            {k: v.contiguous() for k, v in snapshot.weights().items()}, str(target / BEST_WEIGHTS)
        )
    if snapshot.logits is not None:
        save_logits(snapshot.logits, target)
    (target / HARNESS_STATE).write_text(json.dumps({"step": step, "callbacks": states}) + "\n")


def _rank_rng_states(checkpoint: Path) -> dict[int, bytes]:
    """Under torchrun, at a pause: the other ranks' RNG states, gathered on rank 0 as
    ``{rank: rng_state_<rank>.pth's bytes}`` ({} on the other ranks, and in a lone process).
    The Trainer writes each rank's file into that rank's own scratch checkpoint, and only rank
    0's becomes the paused state; with the files there, a continuation's Trainer restores every
    rank's dropout masks where they were. Every rank calls it at the same pause."""
    if not distributed.started():
        return {}
    here = distributed.world()
    file = checkpoint / f"rng_state_{here.rank}.pth"
    mine = file.read_bytes() if not here.leader and file.is_file() else None
    gathered = distributed.to_leader(mine, tag=("rng state", checkpoint.name))
    if gathered is None:
        return {}
    return {rank: state for rank, state in enumerate(gathered) if state is not None}


def _load_callback_states(state: Path, stateful: list[TrainerCallback]) -> None:
    """The callbacks' state of a paused run (see :func:`_save_pause`)."""
    saved = json.loads((state / HARNESS_STATE).read_text())["callbacks"]
    for callback in stateful:
        name = type(callback).__name__
        if name not in saved or not hasattr(callback, "load_state"):
            continue
        if isinstance(callback, BestSnapshot):
            weights = None
            if (state / BEST_WEIGHTS).is_file():
                from safetensors.torch import load_file

                weights = load_file(str(state / BEST_WEIGHTS))
            callback.load_state(saved[name], weights, load_logits(state))
        else:
            callback.load_state(saved[name])


def _resumed_step(state: Path | None) -> int:
    if state is None:
        return 0
    return int(json.loads((Path(state) / HARNESS_STATE).read_text())["step"])


class NonFiniteLoss(FloatingPointError):
    """The training loss became NaN or infinite: the trial fails at that step."""


def _trainer_class() -> type[Trainer]:
    import torch
    from torch.utils.data import SequentialSampler
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    # transformers is untyped for mypy (its classes are Any): subclassing them is fine
    class EpochSeededLengthGroupedSampler(LengthGroupedSampler):  # type: ignore[misc]
        """HF's length-grouped order drawn from the seed and the epoch alone (HF's draws from
        the global RNG, whose state at an epoch's start a resumed run cannot reproduce)."""

        def __init__(self, batch_size: int, *, lengths: list[int], seed: int) -> None:
            super().__init__(batch_size, lengths=lengths)
            self.seed, self.epoch = seed, 0
            self.generator = torch.Generator()

        def set_epoch(self, epoch: int) -> None:  # called by the Trainer before every epoch
            self.epoch = epoch

        def __iter__(self) -> Iterator[int]:
            self.generator.manual_seed(self.seed + self.epoch)
            order: Iterator[int] = super().__iter__()
            return order

    class HarnessTrainer(Trainer):  # type: ignore[misc]
        """The HF Trainer, plus: a NaN or infinite training loss fails the trial at the step it
        appears (HF would only filter it out of the logged average); an evaluation draws
        nothing from the global RNG (so it never changes what is trained); validation splits are
        evaluated in their own order: they come sorted by length, so batches pad to almost
        nothing (group_by_length would shuffle them again); the length-grouped training order
        depends on the seed and the epoch only, so that a paused run resumes exactly (HF's
        random order already does)."""

        lr_scales: dict[str, float] | None = None  # train.layer_lr_decay, loraplus_lr_ratio
        optimizer: torch.optim.Optimizer | None  # the Trainer's (None until it is created)

        def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
            """The Trainer's optimizer, with a learning rate per parameter where the harness
            scales them (:mod:`harness.train.optimizer`)."""
            if self.lr_scales is None or self.optimizer is not None:
                return super().create_optimizer(model)
            target = self.model if model is None else model
            optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, target)
            groups = parameter_groups(
                target,
                self.lr_scales,
                set(self.get_decay_parameter_names(target)),
                self.args.learning_rate,
                self.args.weight_decay,
            )
            self.optimizer = optimizer_cls(
                groups, **{k: v for k, v in kwargs.items() if k != "params"}
            )
            return self.optimizer

        def _get_train_sampler(
            self, train_dataset: Dataset | None = None
        ) -> torch.utils.data.Sampler[int] | None:
            sampler = super()._get_train_sampler(train_dataset)
            if type(sampler) is LengthGroupedSampler:
                return EpochSeededLengthGroupedSampler(
                    sampler.batch_size, lengths=sampler.lengths, seed=int(self.args.seed)
                )
            return sampler

        def compute_loss(
            self,
            model: torch.nn.Module,
            inputs: dict[str, torch.Tensor],
            return_outputs: bool = False,
            num_items_in_batch: torch.Tensor | int | None = None,
        ) -> Any:  # the loss, or (loss, outputs): the Trainer's own return
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

        def evaluate(self, *args: object, **kwargs: object) -> dict[str, float]:
            """The Trainer's evaluation, leaving the global RNG as it found it: a DataLoader
            draws its base seed from it, so each evaluation would shift the dropout masks of
            every later training step, and which evaluations run (``train.evaluate_from``)
            would change what is trained."""
            meters = [c for c in self.callback_handler.callbacks if isinstance(c, ComputeMeter)]
            for meter in meters:
                meter.evaluation_started()
            try:
                with torch.random.fork_rng(devices=[]):  # the CPU generator, restored after
                    metrics: dict[str, float] = super().evaluate(*args, **kwargs)
                return metrics
            finally:
                for meter in meters:
                    meter.evaluation_ended()

        def prediction_step(
            self,
            model: torch.nn.Module,
            inputs: dict[str, torch.Tensor],
            prediction_loss_only: bool,
            ignore_keys: list[str] | None = None,
        ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
            faults.hit("evaluate")
            out: tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None] = (
                super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
            )
            return out

        def _get_eval_sampler(self, eval_dataset: Dataset) -> SequentialSampler:
            return SequentialSampler(eval_dataset)

    return HarnessTrainer
