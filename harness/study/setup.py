"""Before a study exists: check the composed config, then prepare what every trial shares.

Everything that does not depend on a trial's values (data, tokenization, base weights, metric
modules) is prepared once, before the Optuna study or any MLflow run exists, so bad input stops
the run with nothing created.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from harness.base.errors import ConfigError, first_line
from harness.base.extras import check_target
from harness.base.files import check_sqlite_writable, check_writable, sqlite_path
from harness.base.objects import build
from harness.base.output_folders import check_replaceable
from harness.base.secrets import mask
from harness.base.storages import check_url
from harness.config import check_sections, settings
from harness.data import load_labelled_data, tokenize
from harness.metrics import load_metrics
from harness.records import schema
from harness.records.reach import reach_server
from harness.space import MethodSpace, SearchSpace
from harness.study import enqueued
from harness.study.output_dir import check_owner
from harness.train.arguments import training_arguments
from harness.train.model import build_trial_model, load_base_model, load_tokenizer

if TYPE_CHECKING:
    import torch
    from datasets import DatasetDict

    from harness.metrics import MetricSuite
    from harness.train.model import BaseModel

# ----------------------------------------------------------------------------- validate


def validate_config(cfg: DictConfig) -> SearchSpace | MethodSpace:
    """Cheap checks of the composed config (no data, no model): raise :class:`ConfigError`.

    The harness's own sections check themselves (their schemas, :mod:`harness.config.schema`);
    here the checks that span sections. Returns the study's search space (a SearchSpace, or a
    MethodSpace for a methods study).
    """
    check_sections(cfg)
    space = (
        MethodSpace.from_config(cfg)
        if cfg.get("method_space")
        else SearchSpace.from_config(cfg.get("search_space"), cfg)
    )
    study = settings(cfg, "study")
    if str(study.name).endswith(schema.FINAL_STUDY_SUFFIX):  # records.trials.final_study_name
        raise ConfigError(
            "study.name",
            f"must not end with '{schema.FINAL_STUDY_SUFFIX}', got "
            f"{study.name!r}: the study '<name>"
            f"{schema.FINAL_STUDY_SUFFIX}' holds the final-stage "
            "runs of study '<name>' (a resume would take this "
            "study for one): choose another name",
        )
    if study.second_objective is not None and cfg.pruner.get("_target_") != (
        "optuna.pruners.NopPruner"
    ):
        raise ConfigError(
            "pruner",
            f"Optuna cannot prune a multi-objective study (study.second_objective="
            f"{study.second_objective}): choose pruner=none, or drop the second objective to "
            "keep pruning",
        )
    if study.metric == "loss" and study.direction != "minimize":
        raise ConfigError(
            "study.direction",
            "the loss is minimized: study.metric=loss needs "
            f"study.direction=minimize, got {study.direction!r}",
        )
    if cfg.get("method_space") and str(cfg.sampler.get("_target_", "")).endswith("GridSampler"):
        raise ConfigError(
            "sampler",
            "a grid cannot search a methods study (its space differs "
            "per method): use sampler=tpe or sampler=random",
        )
    check_writable("study.output_dir", study.output_dir)
    check_url("study.storage", str(study.storage))  # and an SQLite / journal file writable
    if cfg.get("display") is not None and cfg.display.get("log_file"):
        check_writable("display.log_file", Path(str(cfg.display.log_file)).expanduser().parent)
    check_owner(str(study.output_dir), str(study.name), str(study.storage))
    check_tracking(cfg.tracking)
    if cfg.get("report") is not None and cfg.report.enabled:
        check_replaceable(
            "report.dir",
            Path(str(cfg.report.dir)),
            "report",
            str(study.name),
            cfg,
            default=Path(str(study.output_dir)) / "report",
        )
    check_target("sampler", str(cfg.sampler.get("_target_", "")))
    check_storage_pickles(build("sampler", cfg.sampler), study.trust_storage_pickles)
    build("pruner", cfg.pruner)
    enqueued.planned(cfg, space)  # study.enqueue / study.warm_start: sets that fit the space
    return space


def check_tracking(tracking: DictConfig) -> None:
    """The tracking store can be used, checked without creating it: the store (an SQLite file
    and its folder) is made only once the data and the model are prepared (the tracker), so
    that bad input leaves no MLflow store behind. A server that does not answer fails here, in
    seconds."""
    uri = str(tracking.get("uri") or "")
    if uri.startswith(("http://", "https://")):
        reach_server(uri)
    path = sqlite_path(uri)
    if path is not None:
        try:
            check_writable("tracking.uri", path.parent)
        except ConfigError as exc:
            raise ConfigError("tracking.uri", mask(f"cannot use '{uri}': {exc.message}")) from None
        check_sqlite_writable("tracking.uri", uri)
    location = str(tracking.get("artifact_location") or "")
    if location and ("://" not in location or location.startswith("file://")):
        check_writable("tracking.artifact_location", location.removeprefix("file://"))


def check_storage_pickles(sampler: object, trusted: bool) -> None:
    """``study.trust_storage_pickles=false``: refuse a sampler that unpickles what it reads from
    the study storage, so that whoever can write the storage cannot run code in the workers.

    Optuna's CmaEsSampler stores its optimizer as a hex-encoded pickle in trial system attrs
    and unpickles the latest one on every trial (``optuna/samplers/_cmaes.py``,
    ``_restore_optimizer``); Optuna has no switch to turn that off. Its other samplers keep
    what they store as JSON. A sampler that is not one of Optuna's own cannot be vouched for,
    so it is refused too. Samplers inside the sampler (CmaEs's independent sampler, a
    PartialFixedSampler's base sampler) are checked as well.
    """
    if trusted:
        return
    from optuna.samplers import BaseSampler, CmaEsSampler

    seen: set[int] = set()
    todo = [sampler]
    while todo:
        part = todo.pop()
        if id(part) in seen:
            continue
        seen.add(id(part))
        todo += [v for v in getattr(part, "__dict__", {}).values() if isinstance(v, BaseSampler)]
        kind = type(part)
        if isinstance(part, CmaEsSampler):
            why = (
                f"{kind.__name__} keeps its state in the study storage as a pickle and "
                "unpickles it on every trial"
            )
        elif not kind.__module__.startswith("optuna.samplers."):
            why = (
                f"{kind.__module__}.{kind.__qualname__} is not one of Optuna's own samplers, "
                "so the harness cannot tell whether it unpickles what it reads from the storage"
            )
        else:
            continue
        raise ConfigError(
            "study.trust_storage_pickles",
            f"is false and {why} (whoever can write the storage could run code in every "
            "worker): choose a sampler that does not (tpe, gp, random, qmc, grid, nsga2), or set "
            "study.trust_storage_pickles=true for a storage that only people you trust can write",
        )


# ----------------------------------------------------------------------------- prepare


@dataclass
class Prepared:
    """What every trial of the study shares, built once."""

    cfg: DictConfig
    space: SearchSpace | MethodSpace
    label_names: list[str]
    datasets: DatasetDict  # tokenized
    base: BaseModel
    metrics: MetricSuite

    def fixed_params(self) -> dict[str, Any]:
        """Params every trial run (and the parent run) records besides the sampled ones."""
        cfg = self.cfg
        return {
            schema.MODEL_PARAM: cfg.model.name,
            schema.MODEL_PATH_PARAM: str(cfg.model.name_or_path),
            "data": cfg.data.name,
            schema.METHOD_PARAM: "search" if cfg.get("method_space") else cfg.peft.method,
            "labels": ",".join(self.label_names),
        }

    def study_params(self) -> dict[str, Any]:
        """The parent run's params: the fixed ones, the study's settings, its space, the data."""
        cfg = self.cfg
        space = {
            key: OmegaConf.to_container(cfg[key], resolve=True)
            for key in ("search_space", "method_space")
            if cfg.get(key)
        }
        return {
            **self.fixed_params(),
            "study.metric": cfg.study.metric,
            "study.direction": cfg.study.direction,
            "sampler": cfg.sampler._target_,
            "sampler.seed": cfg.sampler.get("seed"),
            "pruner": cfg.pruner._target_,
            "checkpoints.keep": cfg.checkpoints.keep,
            **{key: json.dumps(value) for key, value in space.items()},
            **{schema.DATA_SIZE_PARAM.format(split=k): len(v) for k, v in self.datasets.items()},
        }


def prepare_study(cfg: DictConfig, space: SearchSpace | MethodSpace) -> Prepared:
    """Load and tokenize the data, load the metrics and the base model; check a trial builds."""
    data = load_labelled_data(cfg.data)
    with tempfile.TemporaryDirectory() as scratch:
        training_arguments(cfg.train, len(data.splits["train"]), scratch)
    metrics = load_metrics(
        list(cfg.metrics), cfg.get("metric_args"), bool(cfg.get("metrics_trust_remote_code", False))
    )
    names = metrics.output_names(data.num_labels) + ["loss"]
    for field in ("metric", "prune_metric"):
        name = cfg.study.get(field)
        if name is not None and name not in names:
            raise ConfigError(
                f"study.{field}",
                f"'{name}' is not computed by metrics {list(cfg.metrics)} (choose one of {names})",
            )
    tokenizer = load_tokenizer(cfg.model)
    tokenized = tokenize(data, tokenizer, cfg.data.max_length)
    base = load_base_model(cfg.model, data.label_names, tokenizer, int(cfg.train.seed))
    _check_max_length(int(cfg.data.max_length), base, tokenized)
    for method_cfg in space.trial_configs(cfg):
        model = build_trial_model(base, method_cfg.peft, int(cfg.train.seed))
        _check_method_runs(model, tokenized, base, method_cfg)
    return Prepared(cfg, space, data.label_names, tokenized, base, metrics)


def _check_max_length(max_length: int, base: BaseModel, tokenized: DatasetDict) -> None:
    """A text cut at data.max_length must fit the model's positions, or every trial fails."""
    positions = getattr(base.model.config, "max_position_embeddings", None)
    if not isinstance(positions, int) or max_length <= positions:
        return
    longest = max(max(split["length"]) for split in tokenized.values())
    if longest > positions:
        raise ConfigError(
            "data.max_length",
            f"{max_length} is above the model's "
            f"{positions} positions and some texts are "
            f"{longest} tokens long: set it to {positions} "
            "or less",
        )


def _check_method_runs(
    model: torch.nn.Module, tokenized: DatasetDict, base: BaseModel, cfg: DictConfig
) -> None:
    """One forward pass on two validation examples: a method the model family cannot run
    (e.g. prefix tuning without past key values) fails here, before any study exists."""
    import torch
    from transformers import DataCollatorWithPadding

    rows = tokenized["validation"].select(range(min(2, len(tokenized["validation"]))))
    rows = rows.remove_columns(
        [c for c in rows.column_names if c not in ("input_ids", "attention_mask", "token_type_ids")]
    )
    batch = DataCollatorWithPadding(base.tokenizer)([rows[i] for i in range(len(rows))])
    model.eval()
    try:
        with torch.no_grad():
            model(**batch)
    except Exception as exc:
        raise ConfigError(
            "peft",
            f"method '{cfg.peft.method}' does not run on model "
            f"'{cfg.model.name}' ({base.model.config.model_type}): {first_line(exc)}",
        ) from exc
