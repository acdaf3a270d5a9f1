"""A search space as data: dotted config paths mapped to distributions.

In a sweep's YAML::

    search_space:
      train.learning_rate: {type: float, low: 1.0e-4, high: 5.0e-3, log: true}
      train.num_train_epochs: {type: int, low: 1, high: 4}
      peft.config.r: {type: categorical, choices: [4, 8, 16]}
      train.seed: {type: fixed, value: 7}      # fixed for the study: applied, not searched

The space is validated against the composed config before anything is created; a trial's
values are applied to a copy of the config, never to the study's own. The checks of an entry
are the harness's own rather than ``optuna.distributions``' (which raise the same cases): these
name the entry (``search_space.<path>``) and say what to change, and Optuna's would not.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from harness.base.errors import ConfigError

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import CategoricalChoiceType

# Parts of the config that are prepared once per study (data, base model) or that describe the
# study itself: a trial cannot vary them.
FIXED_PER_STUDY = ("model", "data", "study", "tracking", "sampler", "pruner", "search_space")
PER_TRIAL = ("train", "peft")  # the sections a trial reads: the only ones worth searching
_KINDS = ("float", "int", "categorical", "fixed")
_KEYS = {
    "fixed": {"type", "value"},
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}


@dataclass(frozen=True)
class Param:
    """One dimension of the search space."""

    path: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[object, ...] = field(default_factory=tuple)  # YAML values (lists too)
    value: object = None  # kind "fixed": the value every trial runs with (not an Optuna param)

    @property
    def searched(self) -> bool:
        return self.kind != "fixed"

    def bounds(self) -> tuple[float, float]:
        """(low, high) of a float or int parameter."""
        if self.low is None or self.high is None:
            raise ValueError(f"{self.path}: a {self.kind} parameter has no low and high")
        return self.low, self.high

    def suggest(self, trial: optuna.Trial) -> object:
        """Ask an Optuna trial for a value of this parameter (a fixed one: its value)."""
        if not self.searched:
            return self.value
        if self.kind == "float":
            low, high = self.bounds()
            return trial.suggest_float(self.path, low, high, log=self.log, step=self.step)
        if self.kind == "int":
            low, high = self.bounds()
            return trial.suggest_int(
                self.path, int(low), int(high), log=self.log, step=int(self.step or 1)
            )
        # Optuna stores categorical choices as primitives; lists (e.g. a set of target modules)
        # are offered to it as their JSON text and turned back into lists here.
        labels = [_choice_label(c) for c in self.choices]
        label = trial.suggest_categorical(self.path, labels)
        return self.choices[labels.index(label)]

    def grid_values(self, points: int) -> list[CategoricalChoiceType]:
        """Values for a grid search: the choices, the int steps, or ``points`` floats spread
        evenly (on a log scale for ``log: true``) from low to high."""
        if self.kind == "categorical":
            return [_choice_label(c) for c in self.choices]
        low, high = self.bounds()
        if self.kind == "int" and not self.log:
            steps = list(range(int(low), int(high) + 1, int(self.step or 1)))
            if len(steps) <= points:
                return list(steps)
        if self.step is not None and self.kind == "float":
            n = int(math.floor((high - low) / self.step + 1e-9)) + 1
            return [low + i * self.step for i in range(n)]
        if points < 2:
            raise ConfigError("sampler.search_space", f"needs at least 2 points, got {points}")
        if self.log:
            lo, hi = math.log(low), math.log(high)
            values = [math.exp(lo + (hi - lo) * i / (points - 1)) for i in range(points)]
        else:
            values = [low + (high - low) * i / (points - 1) for i in range(points)]
        if self.kind == "int":
            return list(sorted({int(round(v)) for v in values}))
        return list(values)


def _choice_label(choice: object) -> CategoricalChoiceType:
    if choice is None or isinstance(choice, bool | int | float | str):
        return choice
    return json.dumps(choice)


class SearchSpace:
    """An ordered collection of :class:`Param`, parsed and validated from config data."""

    def __init__(self, params: list[Param]) -> None:
        self.params = params

    @classmethod
    def from_config(cls, space: object, cfg: DictConfig | None = None) -> SearchSpace:
        """Parse ``search_space``; with ``cfg``, check every path exists and may vary."""
        if space is None or (isinstance(space, Mapping | DictConfig) and len(space) == 0):
            if cfg is not None and cfg.get("method_space"):
                return cls([])
            raise ConfigError(
                "search_space",
                "no search space: choose a sweep with +sweep=NAME (see conf/sweep/) "
                "or define search_space",
            )
        if isinstance(space, DictConfig):
            space = OmegaConf.to_container(space, resolve=True)
        if not isinstance(space, Mapping):
            raise ConfigError("search_space", "must map dotted config paths to distributions")
        params = [_parse_param(str(path), spec) for path, spec in space.items()]
        if cfg is not None:
            for param in params:
                _check_path(param.path, cfg)
        return cls(params)

    def grid(self, points: int = 3) -> dict[str, list[CategoricalChoiceType]]:
        """The space as an ``optuna.samplers.GridSampler`` search space."""
        return {p.path: p.grid_values(points) for p in self.params if p.searched}

    # Any: Optuna's values (a fixed one: any config value), as FrozenTrial.params holds them
    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample one value per parameter (define-by-run)."""
        return {p.path: p.suggest(trial) for p in self.params}

    def sample(self, trial: optuna.Trial, cfg: DictConfig) -> tuple[DictConfig, dict[str, Any]]:
        """A trial's config (values applied to a copy of ``cfg``) and the sampled params."""
        values = self.suggest(trial)
        return self.apply(cfg, values), values

    def trial_configs(self, cfg: DictConfig) -> list[DictConfig]:
        """The configs a trial can run with, apart from sampled values: just ``cfg``."""
        return [cfg]

    def param_names(self) -> list[str]:
        """Every param name a trial of this space can record (fixed ones included: MLflow
        records them on every trial run)."""
        return [p.path for p in self.params]

    @staticmethod
    def apply(cfg: DictConfig, values: Mapping[str, object]) -> DictConfig:
        """A copy of ``cfg`` with ``values`` (dotted paths) set; ``cfg`` is left untouched."""
        trial_cfg = cfg.copy()
        OmegaConf.set_readonly(trial_cfg, False)
        for path, value in values.items():
            OmegaConf.update(trial_cfg, path, value, merge=False, force_add=False)
        return trial_cfg

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)


def _parse_param(path: str, spec: object) -> Param:
    where = f"search_space.{path}"
    if not isinstance(spec, Mapping):
        raise ConfigError(where, f"expected a mapping with a 'type', got {spec!r}")
    kind = spec.get("type")
    if kind not in _KINDS:
        raise ConfigError(where, f"type must be one of {', '.join(_KINDS)}, got {kind!r}")
    if kind == "fixed" and "value" not in spec:
        raise ConfigError(
            where, "'value' is required for type fixed (the value every trial runs with)"
        )
    unknown = set(spec) - _KEYS[kind]
    if unknown:
        raise ConfigError(
            where,
            f"unknown key(s) {', '.join(sorted(unknown))} for type {kind} "
            f"(allowed: {', '.join(sorted(_KEYS[kind]))})",
        )
    if kind == "fixed":
        return Param(path, kind, value=spec["value"])
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list | tuple) or len(choices) == 0:
            raise ConfigError(where, "choices must be a non-empty list")
        labels = [_choice_label(c) for c in choices]
        if len(set(map(json.dumps, labels))) != len(labels):
            raise ConfigError(where, f"choices contain duplicates: {list(choices)}")
        return Param(path, kind, choices=tuple(choices))

    for key in ("low", "high"):
        if key not in spec:
            raise ConfigError(where, f"'{key}' is required for type {kind}")
        value = spec[key]
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if not is_number or not math.isfinite(value):
            raise ConfigError(where, f"{key} must be a finite number, got {value!r}")
        if kind == "int" and not float(value).is_integer():
            raise ConfigError(where, f"{key} must be an integer for type int, got {value!r}")
    low, high = spec["low"], spec["high"]
    log, step = bool(spec.get("log", False)), spec.get("step")
    if low >= high:
        raise ConfigError(where, f"low ({low}) must be less than high ({high})")
    if log and low <= 0:
        raise ConfigError(where, f"log: true needs low > 0, got low={low}")
    if log and step is not None:
        raise ConfigError(where, "log and step cannot be combined")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, int | float) or step <= 0:
            raise ConfigError(where, f"step must be a positive number, got {step!r}")
        if kind == "int" and not float(step).is_integer():
            raise ConfigError(where, f"step must be an integer for type int, got {step!r}")
        if step > high - low:
            raise ConfigError(where, f"step ({step}) is larger than high - low ({high - low})")
    if kind == "int":
        return Param(path, kind, int(low), int(high), log, int(step) if step is not None else None)
    return Param(path, kind, float(low), float(high), log, float(step) if step else None)


def _check_path(path: str, cfg: DictConfig) -> None:
    where = f"search_space.{path}"
    root = path.split(".", 1)[0]
    if root in FIXED_PER_STUDY:
        raise ConfigError(
            where,
            f"'{root}' is fixed for the whole study (data and model are prepared once per "
            "study); search over train.*, peft.* or other trial settings",
        )
    if root not in PER_TRIAL:
        raise ConfigError(
            where,
            f"'{root}' is not read by a trial (it is used once per study): "
            f"only {' and '.join(f'{r}.*' for r in PER_TRIAL)} settings "
            "change between trials",
        )
    parent_path, _, key = path.rpartition(".")
    parent = OmegaConf.select(cfg, parent_path) if parent_path else cfg
    if not isinstance(parent, DictConfig) or key not in parent:
        hint = ""
        if isinstance(parent, DictConfig):
            hint = f" (keys there: {', '.join(map(str, parent.keys()))})"
        elif parent is None and parent_path:
            hint = f" ('{parent_path}' is not set for the options chosen)"
        raise ConfigError(where, f"'{path}' is not in the composed config{hint}")
    if isinstance(parent._get_node(key), DictConfig):
        raise ConfigError(where, f"'{path}' is a config section, not a value")
