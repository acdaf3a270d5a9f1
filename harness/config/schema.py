"""The harness's own settings as typed configs: the schemas of ``conf/config.yaml``.

Each section (study, checkpoints, report, export, display, final) is a dataclass
registered in Hydra's ConfigStore and listed first in the config's defaults, so Hydra checks the
types of every override; each checks its ranges in ``__post_init__``, run by :func:`settings`
before anything is created. A field's rule is written once, in its metadata: the range check and
the message for a value of the wrong type (:func:`must_be`) both read it.

``train`` stays open to any ``TrainingArguments`` field (an OmegaConf structured config is
closed), so its harness keys are checked by :class:`TrainOptions`, built from those keys alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from harness.base.errors import ConfigError

# report.plots: Optuna's matplotlib visualisations and the expected best against trials and
# compute (drawn by harness.report.plots)
PLOTS = ("history", "intermediate", "expected_max", "importances", "parallel", "slice", "pareto")
SECOND_OBJECTIVES = ("trainable_params", "train_time")  # always minimized
CHECKPOINTS_IN_MLFLOW = ("kept", "all")
MERGE_ADAPTER = ("auto", "true", "false")
MIXED_PRECISION = ("auto", "bf16", "fp16", "no")
CPU_DROPOUT = ("fast", "torch")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
COMBINE = ("best", "ensemble", "soup", "auto")  # final.combine: what the study ships
VARY = ("all", "data_order")  # final.vary: what the final stage's seeds change


# _integer and _rule return a dataclass field(), which stands in for the field's value: Any
def _integer(default: int | None, minimum: int = 1, nullable: bool = False) -> Any:
    bound = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    return field(
        default=default,
        metadata={
            "must": bound + (" or null" if nullable else ""),
            "min": minimum,
            "null": nullable,
        },
    )


def _rule(default: object, must: str, **checks: object) -> Any:
    return field(default=default, metadata={"must": must, **checks})


class _Checked:
    """Checks every field's metadata rule; subclasses name their section."""

    SECTION: ClassVar[str] = ""
    # set by @dataclass on each section (this makes every one a dataclass to the type checker)
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            value, rule = getattr(self, spec.name), spec.metadata
            if "must" in rule and not _obeys(value, rule):
                raise ConfigError(
                    f"{self.SECTION}.{spec.name}", f"must be {rule['must']}, got {value!r}"
                )


def _obeys(value: Any, rule: Mapping[str, Any]) -> bool:  # Any: a config value, and a rule's
    if value is None:
        return bool(rule.get("null"))
    if "min" in rule:
        return not isinstance(value, bool) and isinstance(value, int) and value >= rule["min"]
    if "one_of" in rule:
        return bool(value in rule["one_of"])
    if "range" in rule:  # [low, high)
        low, high = rule["range"]
        return bool(low <= value < high)
    if "positive" in rule:
        return bool(value > 0)
    if "at_least" in rule:
        return bool(value >= rule["at_least"])
    return True


@dataclass
class FailureLimitConfig(_Checked):
    SECTION: ClassVar[str] = "study.failure_limit"
    consecutive: int | None = _integer(3, nullable=True)
    rate: float | None = _rule(0.5, "in [0, 1) or null", range=(0, 1), null=True)
    min_trials: int = _integer(6)


@dataclass
class WarmStartConfig(_Checked):
    """``study.warm_start``: the best trials of another study, queued to run first."""

    SECTION: ClassVar[str] = "study.warm_start"
    name: str | None = None  # the other study (null: no warm start)
    storage: str | None = None  # its storage (null: study.storage)
    top_k: int = _integer(5)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.name is not None and not str(self.name).strip():
            raise ConfigError("study.warm_start.name", "must not be empty (null: no warm start)")


@dataclass
class StudyConfig(_Checked):
    SECTION: ClassVar[str] = "study"
    name: str = MISSING
    storage: str = MISSING
    n_trials: int = _integer(10)
    timeout: float | None = _rule(
        None, "a positive number of seconds or null", positive=True, null=True
    )
    metric: str = "accuracy"
    prune_metric: str | None = None
    direction: str = _rule("maximize", "maximize or minimize", one_of=("maximize", "minimize"))
    second_objective: str | None = _rule(
        None, f"one of {', '.join(SECOND_OBJECTIVES)} or null", one_of=SECOND_OBJECTIVES, null=True
    )
    output_dir: str = MISSING
    heartbeat_interval: int = _integer(10)
    grace_period: int = _rule(60, "at least study.heartbeat_interval")
    max_retries: int | None = _integer(2, minimum=0, nullable=True)
    workers: int = _integer(1)
    worker: int | None = _integer(None, minimum=0, nullable=True)
    threads: int | None = _integer(None, nullable=True)
    # devices (harness.base.devices): GPUs one worker's trial uses, and workers sharing one GPU
    gpus_per_worker: int = _integer(1)
    workers_per_gpu: int = _integer(1)
    # Ctrl-C / SIGTERM / a cluster's time limit save the running trial's training state; the
    # next run continues it from there (harness.study.objective)
    resume_trials: bool = False
    # false: refuse samplers that unpickle state read from the storage (harness.study.setup)
    trust_storage_pickles: bool = True
    failure_limit: FailureLimitConfig = field(default_factory=FailureLimitConfig)
    # trials run first (chosen and queued by harness.study.enqueued): parameter sets
    # ({param name: value}, checked against the search space; a value is any config value) ...
    enqueue: list[dict[str, Any]] = field(
        default_factory=list, metadata={"must": "a list of parameter sets ([{name: value, …}, …])"}
    )
    # ... and the best trials of another study
    warm_start: WarmStartConfig = field(default_factory=WarmStartConfig)

    def __post_init__(self) -> None:
        if not str(self.name).strip():
            raise ConfigError("study.name", "must not be empty")
        # the name becomes folder names (study.output_dir, the MLflow artifact location)
        if any(c in str(self.name) for c in "/\\\0") or ".." in str(self.name):
            raise ConfigError(
                "study.name",
                f"must be a name, not a path (no '/', '\\' or '..'), got {self.name!r}",
            )
        super().__post_init__()
        if self.grace_period < self.heartbeat_interval:
            raise ConfigError(
                "study.grace_period",
                f"must be at least study.heartbeat_interval, got {self.grace_period!r}",
            )


@dataclass
class CheckpointsConfig(_Checked):
    SECTION: ClassVar[str] = "checkpoints"
    keep: int | None = _integer(2, nullable=True)
    mlflow: str = _rule(
        "kept", f"one of {', '.join(CHECKPOINTS_IN_MLFLOW)}", one_of=CHECKPOINTS_IN_MLFLOW
    )
    paused_gb: float | None = _rule(
        5.0, "a positive number of GB or null", positive=True, null=True
    )


@dataclass
class ReportConfig(_Checked):
    SECTION: ClassVar[str] = "report"
    enabled: bool = True
    dir: str = MISSING
    plots: list[str] = field(default_factory=lambda: list(PLOTS[:-1]), metadata={"plots": True})
    max_params: int = _integer(6)
    mlflow: bool = True

    def __post_init__(self) -> None:
        for name in self.plots:
            if name not in PLOTS:
                raise ConfigError(
                    "report.plots", f"unknown plot {name!r} (known: {', '.join(PLOTS)})"
                )
        super().__post_init__()


@dataclass
class ExportConfig(_Checked):
    SECTION: ClassVar[str] = "export"
    dir: str = MISSING
    trial: int | None = _integer(None, minimum=0, nullable=True)
    merge_adapter: str = _rule("auto", "auto, true or false", one_of=MERGE_ADAPTER)
    register: bool = False

    def __post_init__(self) -> None:
        self.merge_adapter = str(self.merge_adapter).lower()  # false on a command line is a bool
        super().__post_init__()


@dataclass
class DisplayConfig(_Checked):
    SECTION: ClassVar[str] = "display"
    progress: bool = True
    trainer_bars: bool = False
    log_level: str = _rule("INFO", f"one of {', '.join(LOG_LEVELS)}", one_of=LOG_LEVELS)
    log_file: str | None = None


@dataclass
class FinalConfig(_Checked):
    SECTION: ClassVar[str] = "final"
    top_k: int = _integer(2)
    seeds: int = _integer(2, minimum=0)
    recipe: bool = True
    combine: str = _rule("auto", f"one of {', '.join(COMBINE)}", one_of=COMBINE)
    ensemble_size: int = _integer(8)
    vary: str = _rule("all", f"one of {', '.join(VARY)}", one_of=VARY)
    workers: int = _integer(2)


@dataclass
class TrainOptions(_Checked):
    """The harness's keys of ``train`` (the others are TrainingArguments fields)."""

    SECTION: ClassVar[str] = "train"
    evals_per_epoch: int = _integer(4)
    evaluate_from: float = _rule(0.6, "a number in [0, 1]", at_least=0)
    early_stopping_patience: int | None = _rule(
        None, "a positive integer (evaluations) or null", min=1, null=True
    )
    early_stopping_threshold: float = _rule(0.0, "a number >= 0", at_least=0)
    mixed_precision: str = _rule(
        "auto", f"one of {', '.join(MIXED_PRECISION)}", one_of=MIXED_PRECISION
    )
    cpu_dropout: str = _rule("fast", f"one of {', '.join(CPU_DROPOUT)}", one_of=CPU_DROPOUT)
    layer_lr_decay: float | None = _rule(
        None, "a number in (0, 1] or null", positive=True, null=True
    )
    loraplus_lr_ratio: float | None = _rule(
        None, "a positive number or null", positive=True, null=True
    )
    reinit_layers: int | None = _integer(None, minimum=0, nullable=True)

    def __post_init__(self) -> None:
        self.mixed_precision = self.mixed_precision or "no"
        super().__post_init__()
        if self.evaluate_from > 1:
            raise ConfigError(
                "train.evaluate_from", f"must be a number in [0, 1], got {self.evaluate_from!r}"
            )
        if self.layer_lr_decay is not None and self.layer_lr_decay > 1:
            raise ConfigError(
                "train.layer_lr_decay",
                f"must be a number in (0, 1] or null, got {self.layer_lr_decay!r}",
            )


# section -> its schema (registered in the ConfigStore; conf/config.yaml lists them first)
SECTIONS: dict[str, type] = {
    "study": StudyConfig,
    "checkpoints": CheckpointsConfig,
    "report": ReportConfig,
    "export": ExportConfig,
    "display": DisplayConfig,
    "final": FinalConfig,
}


def register() -> None:
    """Put the schemas in Hydra's ConfigStore as ``harness_schema_<section>``."""
    store = ConfigStore.instance()
    for section, schema in SECTIONS.items():
        store.store(name=f"harness_schema_{section}", node=schema, package=section)
