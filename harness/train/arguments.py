"""``TrainingArguments`` of a trial: the ``train`` section (open to any TrainingArguments field)
plus the fields the harness owns (evaluation cadence, no checkpoints of HF's own); HF's reporting
integrations only where ``train.report_to`` names them (MLflow is the harness's own)."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, cast

from omegaconf import DictConfig, OmegaConf

from harness.base import devices, distributed
from harness.base.errors import ConfigError, first_line
from harness.config.access import check_training_fields, report_to, train_options
from harness.config.schema import TrainOptions

if TYPE_CHECKING:
    from transformers import TrainingArguments

# Keys of `train` that are the harness's, not TrainingArguments'.
HARNESS_KEYS = tuple(f.name for f in dataclasses.fields(TrainOptions))


def steps_per_epoch(train_cfg: DictConfig, train_size: int, world_size: int | None = None) -> int:
    """Optimizer steps in one epoch, counted on the global batch (``world_size`` processes ×
    per-device batch × accumulation; ``world_size``: torchrun's WORLD_SIZE, 1 otherwise), as the
    Trainer counts them (each rank sees its share of the data in whole batches, the last one
    partial, and a partial accumulation still steps): so the evaluations fall at the same share
    of the budget on 1 GPU, 4 GPUs or a CPU."""
    ranks = devices.world_size() if world_size is None else max(1, int(world_size))
    batch = int(train_cfg.per_device_train_batch_size)
    accumulation = max(1, int(train_cfg.get("gradient_accumulation_steps", 1) or 1))
    batches = math.ceil(train_size / (ranks * batch))  # each rank's batches in one epoch
    return max(1, math.ceil(batches / accumulation))


def refuse_data_parallel(args: TrainingArguments) -> None:
    """Raise where the Trainer would wrap the model in ``nn.DataParallel``: several GPUs visible
    to one training process outside distributed training. The harness gives each worker its own
    GPUs (harness.base.devices, when ``python -m harness.sweep`` starts); this means that did
    not happen, and the trial would run slower on a schedule counted for one GPU."""
    from transformers.training_args import ParallelMode

    if args.n_gpu > 1 and args.parallel_mode != ParallelMode.DISTRIBUTED:
        raise RuntimeError(
            f"{args.n_gpu} GPUs are visible to this training process outside distributed "
            "training, and the Trainer would fall into nn.DataParallel: narrow "
            "CUDA_VISIBLE_DEVICES to one GPU (python -m harness.sweep does so for each worker; "
            "in your own process call harness.base.devices.narrow_devices before CUDA starts), "
            "or train one trial on several GPUs with torchrun --nproc_per_node=K -m harness.sweep"
        )


def harness_options(train_cfg: DictConfig) -> TrainOptions:
    """The harness's own keys of ``train``, checked (also against train.bf16 / train.fp16)."""
    own = train_options(train_cfg)
    if own.mixed_precision != "auto" and (train_cfg.get("bf16") or train_cfg.get("fp16")):
        raise ConfigError(
            "train.mixed_precision",
            "set either train.mixed_precision or train.bf16 / train.fp16, not both",
        )
    return own


def precision_args(precision: str, train_cfg: DictConfig) -> dict[str, bool]:
    """TrainingArguments' bf16 / fp16 for ``train.mixed_precision``: auto is bf16 on a GPU that
    supports it, fp16 on other GPUs, bf16 on a CPU with bf16 instructions (AVX-512 BF16 or AMX,
    under autocast: 1.5x faster at the same accuracy, README "Precision"), full precision on
    other CPUs; train.bf16/fp16 given by hand win over auto."""
    import torch

    if precision == "auto":
        if train_cfg.get("bf16") or train_cfg.get("fp16"):
            return {}
        if torch.cuda.is_available():
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif cpu_has_bf16():
            precision = "bf16"
        else:
            return {}
    elif precision == "bf16" and not torch.cuda.is_available() and not cpu_has_bf16():
        raise ConfigError(
            "train.mixed_precision",
            "bf16 needs a GPU or a CPU with bf16 instructions (AVX-512 BF16 or "
            "AMX); this one has neither: use auto or no",
        )
    elif precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError(
            "train.mixed_precision", "fp16 needs a GPU (none is visible): use auto, bf16 or no"
        )
    out = {"bf16": precision == "bf16", "fp16": precision == "fp16"}
    if precision == "bf16" and not torch.cuda.is_available():
        out["use_cpu"] = True  # TrainingArguments' own word for "bf16 autocast on the CPU"
    return out


def cpu_has_bf16() -> bool:
    """Does this CPU compute in bf16 natively (AVX-512 BF16 or AMX)? Linux's CPU flags."""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next(
                (line.split(":", 1)[1].split() for line in info if line.startswith("flags")), []
            )
    except OSError:  # not Linux: not assumed
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def training_arguments(
    train_cfg: DictConfig, train_size: int, output_dir: str, trainer_bars: bool = False
) -> TrainingArguments:
    """``TrainingArguments`` from ``train`` plus the fields the harness owns.

    Raises :class:`ConfigError` naming the ``train.*`` field that TrainingArguments rejects.
    """
    from transformers import TrainingArguments

    # train's keys are TrainingArguments fields: any config value
    kwargs = cast("dict[str, Any]", OmegaConf.to_container(train_cfg, resolve=True))
    own = harness_options(train_cfg)
    for key in HARNESS_KEYS:
        kwargs.pop(key, None)
    kwargs.pop("report_to", None)
    evals_per_epoch = own.evals_per_epoch
    check_training_fields(train_cfg)
    integrations = reporting_integrations(train_cfg)
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
            report_to=integrations or "none",
            disable_tqdm=not trainer_bars,
            # under torchrun on CPUs: DDP over gloo (without it each rank would train alone)
            **{
                **distributed.training_args(),
                **kwargs,
                **precision_args(own.mixed_precision, train_cfg),
            },
        )
    except TypeError as exc:
        known = {f.name for f in dataclasses.fields(TrainingArguments)}
        unknown = [k for k in kwargs if k not in known]
        field_name = f"train.{unknown[0]}" if unknown else "train"
        raise ConfigError(
            field_name,
            "is not an argument of transformers.TrainingArguments" if unknown else str(exc),
        ) from exc
    except ValueError as exc:
        raise ConfigError("train", first_line(exc)) from exc


def reporting_integrations(train_cfg: DictConfig) -> list[str]:
    """The Hugging Face integrations of ``train.report_to`` (:func:`report_to`: a list, mlflow
    refused), each one the Trainer knows and, for tensorboard, installed; ``all`` is every
    installed one but mlflow (the harness's own). A ConfigError names ``train.report_to``."""
    from transformers.integrations import INTEGRATION_TO_CALLBACK
    from transformers.integrations.integration_utils import (
        get_available_reporting_integrations,
        is_tensorboard_available,
    )

    names = report_to(train_cfg)
    if "all" in names:
        names = [n for n in get_available_reporting_integrations() if n != "mlflow"]
    known = sorted(n for n in INTEGRATION_TO_CALLBACK if n != "mlflow")
    for name in names:
        if name not in known:
            raise ConfigError(
                "train.report_to",
                f"'{name}' is not an integration of the Trainer (choose from {', '.join(known)}, "
                "or all)",
            )
    if "tensorboard" in names and not is_tensorboard_available():
        raise ConfigError(
            "train.report_to", "tensorboard needs the tensorboard package: pip install tensorboard"
        )
    return names
