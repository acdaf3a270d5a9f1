"""Reading the harness's typed settings from a composed config, and turning OmegaConf's type
errors into the harness's one-line form ("FIELD: must be …, got VALUE")."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, cast

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import (
    InterpolationResolutionError,
    InterpolationToMissingValueError,
    MissingMandatoryValue,
    OmegaConfBaseException,
)

from harness.base.errors import ConfigError, first_line
from harness.config.schema import PLOTS, SECTIONS, TrainOptions

# TrainingArguments the harness sets itself (evaluation cadence, no checkpoints of its own).
# report_to is the user's (loggers beside MLflow), checked by check_report_to.
OWNED_ARGS = (
    "output_dir",
    "eval_strategy",
    "eval_steps",
    "logging_strategy",
    "logging_steps",
    "save_strategy",
    "disable_tqdm",
    "load_best_model_at_end",
)
# the sections every study's config has (conf/config.yaml's defaults list)
REQUIRED_SECTIONS = (
    "study",
    "model",
    "data",
    "peft",
    "train",
    "sampler",
    "pruner",
    "tracking",
    "checkpoints",
)


def settings(cfg: DictConfig, section: str) -> Any:  # Any: the section's own dataclass
    """``cfg.<section>`` as its dataclass, its ranges checked (a ConfigError naming the field)."""
    node = cfg.get(section)
    try:
        return OmegaConf.to_object(node)
    except OmegaConfBaseException as exc:
        raise as_config_error(exc, f"{section}.") from None


def check_sections(cfg: DictConfig) -> None:
    """The checks that need the config alone: every section a mapping, nothing required left
    unset, every interpolation resolvable, the harness's own sections against their schemas
    (ranges, choices) and ``train``'s options; a ConfigError naming the field. The command line
    runs them before it imports the study (a bad value is reported in half a second);
    :func:`harness.study.validate_config` starts with them."""
    for section in REQUIRED_SECTIONS:
        if not isinstance(cfg.get(section), DictConfig):
            raise ConfigError(section, f"must be a mapping of settings, got {cfg.get(section)!r}")
    try:
        missing = sorted(OmegaConf.missing_keys(cfg))
    except InterpolationToMissingValueError as exc:  # data.source.x: ${data.train_file}, unset
        found = re.search(r"Missing mandatory value: ([\w.\-]+)", str(exc))
        missing = [found.group(1) if found else str(exc.full_key)]
    if missing:
        raise ConfigError(missing[0], f"is required: set it on the command line ({missing[0]}=…)")
    try:
        OmegaConf.resolve(cfg.copy())
    except (InterpolationResolutionError, MissingMandatoryValue) as exc:
        key = getattr(exc, "full_key", None) or "config"
        raise ConfigError(str(key), first_line(exc)) from exc
    for section in SECTIONS:
        if cfg.get(section) is not None:
            settings(cfg, section)
    train_options(cfg.train)
    check_training_fields(cfg.train)


def check_training_fields(train_cfg: DictConfig) -> None:
    """The TrainingArguments fields of ``train`` that can be checked without building them: none
    the harness sets itself, positive batch sizes, a positive learning rate and epoch count
    (a ConfigError naming the field; TrainingArguments checks the rest when a trial builds it)."""
    for key in OWNED_ARGS:
        if key in train_cfg:
            raise ConfigError(f"train.{key}", "is set by the harness; remove it from train")
    report_to(train_cfg)
    for key in ("per_device_train_batch_size", "per_device_eval_batch_size"):
        value = train_cfg.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"train.{key}", f"must be a positive integer, got {value!r}")
    for key in ("learning_rate", "num_train_epochs"):
        value = train_cfg.get(key)
        if (
            key in train_cfg
            and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0)
            and not (key == "num_train_epochs" and (train_cfg.get("max_steps") or 0) > 0)
        ):
            raise ConfigError(f"train.{key}", f"must be a positive number, got {value!r}")


def report_to(train_cfg: DictConfig) -> list[str]:
    """``train.report_to``: the Hugging Face integrations (tensorboard, wandb, …) that log each
    trial beside the harness's own MLflow records, as a list (null, none or []: none; all: every
    one installed but mlflow). mlflow is refused: the harness records every trial in MLflow
    itself, and HF's MLflowCallback would log each one a second time, as a separate run."""
    value = train_cfg.get("report_to")
    if value is None:
        return []
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list | tuple | ListConfig) or not all(
        isinstance(name, str) and name for name in names
    ):
        raise ConfigError(
            "train.report_to",
            f"must be an integration name or a list of them (e.g. [tensorboard]), got {value!r}",
        )
    names = [str(name) for name in names]
    if "mlflow" in names:
        raise ConfigError(
            "train.report_to",
            "mlflow is the harness's own tracking (tracking.*: every trial is an MLflow run): "
            "the Trainer's MLflow integration would log each trial again as a separate run; "
            "remove mlflow from train.report_to",
        )
    if "none" in names:
        if len(names) > 1:
            raise ConfigError("train.report_to", f"none cannot be listed with others: {names}")
        return []
    return names


def train_options(train_cfg: DictConfig) -> TrainOptions:
    """The harness's keys of ``train``, typed and checked."""
    names = [f.name for f in dataclasses.fields(TrainOptions)]
    own = {k: train_cfg.get(k) for k in names if k in train_cfg}
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TrainOptions), own)
        return cast(TrainOptions, OmegaConf.to_object(merged))
    except OmegaConfBaseException as exc:
        raise as_config_error(exc, "train.") from None


def must_be(full_key: str) -> str | None:
    """What a typed setting must be (``study.n_trials`` → "a positive integer"), or None."""
    section, _, rest = full_key.partition(".")
    schema: Any = TrainOptions if section == "train" else SECTIONS.get(section)
    *parents, name = rest.split(".") if rest else [""]
    for parent in parents:
        fields = {f.name: f for f in dataclasses.fields(schema)} if schema else {}
        schema = fields[parent].default_factory if parent in fields else None
    if schema is None or not dataclasses.is_dataclass(schema):
        return None
    if not name:
        return "a mapping of settings"
    spec = {f.name: f for f in dataclasses.fields(schema)}.get(name)
    if spec is None:
        return None
    if spec.metadata.get("plots"):
        return f"a list of plot names ({', '.join(PLOTS)})"
    return spec.metadata.get("must") or f"of type {getattr(spec.type, '__name__', spec.type)}"


def as_config_error(exc: OmegaConfBaseException, prefix: str = "") -> ConfigError:
    """OmegaConf's type error as the harness's one-line form: "FIELD: must be …, got VALUE"."""
    key = str(getattr(exc, "full_key", "") or "")
    key = key if key.startswith(prefix) or not prefix else prefix + key
    what = must_be(key)
    value = getattr(exc, "value", None)
    if what is not None and key:
        return ConfigError(key, f"must be {what}, got {value!r}")
    return ConfigError(key or prefix.rstrip(".") or "config", str(exc).splitlines()[0])
