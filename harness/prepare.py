"""Before a study exists: check the composed config, then prepare what every trial shares.

Everything that does not depend on a trial's values (data, tokenization, base weights, metric
modules) is prepared once, before the Optuna study or any MLflow run exists, so bad input stops
the run with nothing created.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from harness.errors import ConfigError, first_line, instantiate
from harness.space import SearchSpace

# study.second_objective -> what a trial reports for it (always minimized)
SECOND_OBJECTIVES = ("trainable_params", "train_time")
CHECKPOINTS_IN_MLFLOW = ("kept", "all")


# ----------------------------------------------------------------------------- validate


def validate_config(cfg: DictConfig) -> Any:
    """Cheap checks of the composed config (no data, no model): raise :class:`ConfigError`.

    Returns the study's search space (a SearchSpace, or a MethodSpace for a methods study).
    """
    for section in ("study", "model", "data", "peft", "train", "sampler", "pruner", "tracking",
                    "checkpoints"):
        if not isinstance(cfg.get(section), DictConfig):
            raise ConfigError(section, f"must be a mapping of settings, got {cfg.get(section)!r}")
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(missing[0], f"is required: set it on the command line ({missing[0]}=…)")
    try:
        OmegaConf.resolve(cfg.copy())
    except (InterpolationResolutionError, MissingMandatoryValue) as exc:
        key = getattr(exc, "full_key", None) or "config"
        raise ConfigError(str(key), first_line(exc)) from exc
    if cfg.get("method_space"):
        from harness.space import MethodSpace

        space = MethodSpace.from_config(cfg)
    else:
        space = SearchSpace.from_config(cfg.get("search_space"), cfg)
    study = cfg.study
    if not study.name or not str(study.name).strip():
        raise ConfigError("study.name", "must not be empty")
    if study.direction not in ("maximize", "minimize"):
        raise ConfigError(
            "study.direction", f"must be maximize or minimize, got {study.direction!r}"
        )
    second = study.get("second_objective")
    if second is not None:
        if second not in SECOND_OBJECTIVES:
            raise ConfigError("study.second_objective",
                              f"must be one of {', '.join(SECOND_OBJECTIVES)} or null, "
                              f"got {second!r}")
        if cfg.pruner.get("_target_") != "optuna.pruners.NopPruner":
            raise ConfigError(
                "pruner", f"Optuna cannot prune a multi-objective study (study.second_objective="
                f"{second}): choose pruner=none, or drop the second objective to keep pruning",
            )
    _integer(study, "study.n_trials", minimum=1)
    timeout = study.timeout
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                or timeout <= 0):
        raise ConfigError(
            "study.timeout", f"must be a positive number of seconds or null, got {timeout!r}"
        )
    _integer(study, "study.workers", minimum=1)
    _integer(study, "study.worker", minimum=0, nullable=True)
    _integer(study, "study.threads", minimum=1, nullable=True)
    _integer(study, "study.heartbeat_interval", minimum=1)
    _integer(study, "study.grace_period", minimum=study.heartbeat_interval,
             why="at least study.heartbeat_interval")
    _integer(study, "study.max_retries", minimum=0, nullable=True)
    limit = study.failure_limit
    _integer(limit, "study.failure_limit.consecutive", minimum=1, nullable=True)
    _integer(limit, "study.failure_limit.min_trials", minimum=1)
    rate = limit.rate
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)
                             or not 0 <= rate < 1):
        raise ConfigError("study.failure_limit.rate", f"must be in [0, 1) or null, got {rate!r}")
    _integer(cfg.checkpoints, "checkpoints.keep", minimum=1, nullable=True)
    if cfg.checkpoints.mlflow not in CHECKPOINTS_IN_MLFLOW:
        raise ConfigError("checkpoints.mlflow", f"must be one of {', '.join(CHECKPOINTS_IN_MLFLOW)}"
                                                f", got {cfg.checkpoints.mlflow!r}")
    from harness.report import check_settings

    check_settings(cfg)
    check_writable("study.output_dir", study.output_dir)
    instantiate("sampler", cfg.sampler)
    instantiate("pruner", cfg.pruner)
    return space


def _integer(node: Any, field: str, minimum: int, nullable: bool = False, why: str = "") -> None:
    value = node.get(field.rsplit(".", 1)[1])
    if value is None and nullable:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        bound = why or ("a positive integer" if minimum == 1 else f"an integer >= {minimum}")
        raise ConfigError(field, f"must be {bound}{' or null' if nullable else ''}, "
                                 f"got {value!r}")


def check_writable(field: str, folder: Any) -> None:
    """``folder`` can be created and written to (checked with a probe; nothing is left)."""
    import os

    path = Path(str(folder)).expanduser()
    created = [p for p in (path, *path.parents) if not p.exists()]
    probe = path / f".harness-probe-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(field, f"cannot write to '{folder}': {exc.strerror or exc}") from None
    finally:
        for made in created:  # made again when something is written there
            with contextlib.suppress(OSError):
                made.rmdir()


# ----------------------------------------------------------------------------- prepare


@dataclass
class Prepared:
    """What every trial of the study shares, built once."""

    cfg: DictConfig
    space: SearchSpace
    label_names: list[str]
    datasets: Any  # tokenized DatasetDict
    base: Any  # harness.model.BaseModel
    metrics: Any  # harness.metrics.MetricSuite


def prepare(cfg: DictConfig, space: SearchSpace) -> Prepared:
    """Load and tokenize the data, load the metrics and the base model; check a trial builds."""
    import tempfile

    from harness.data import load_labelled_data, tokenize
    from harness.finetune import training_arguments
    from harness.metrics import load_metrics
    from harness.model import build_trial_model, load_base_model, load_tokenizer

    data = load_labelled_data(cfg.data)
    with tempfile.TemporaryDirectory() as scratch:
        training_arguments(cfg.train, len(data.splits["train"]), scratch)
    metrics = load_metrics(list(cfg.metrics), cfg.get("metric_args"))
    names = metrics.output_names(data.num_labels) + ["loss"]
    if cfg.study.metric not in names:
        raise ConfigError("study.metric", f"'{cfg.study.metric}' is not computed by metrics "
                                          f"{list(cfg.metrics)} (choose one of {names})")
    tokenizer = load_tokenizer(cfg.model)
    tokenized = tokenize(data, tokenizer, cfg.data.max_length)
    base = load_base_model(cfg.model, data.label_names, tokenizer, int(cfg.train.seed))
    for method_cfg in space.trial_configs(cfg):
        model = build_trial_model(base, method_cfg.peft, int(cfg.train.seed))
        _check_method_runs(model, tokenized, base, method_cfg)
    return Prepared(cfg, space, data.label_names, tokenized, base, metrics)


def _check_method_runs(model: Any, tokenized: Any, base: Any, cfg: DictConfig) -> None:
    """One forward pass on two validation examples: a method the model family cannot run
    (e.g. prefix tuning without past key values) fails here, before any study exists."""
    import torch
    from transformers import DataCollatorWithPadding

    rows = tokenized["validation"].select(range(min(2, len(tokenized["validation"]))))
    rows = rows.remove_columns([c for c in rows.column_names
                                if c not in ("input_ids", "attention_mask", "token_type_ids")])
    batch = DataCollatorWithPadding(base.tokenizer)([rows[i] for i in range(len(rows))])
    model.eval()
    try:
        with torch.no_grad():
            model(**batch)
    except Exception as exc:
        raise ConfigError(
            "peft", f"method '{cfg.peft.method}' does not run on model "
            f"'{cfg.model.name}' ({base.model.config.model_type}): {first_line(exc)}"
        ) from exc
