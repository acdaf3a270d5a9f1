"""A methods study's conditional space: the fine-tuning method is a parameter."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from harness.base.errors import ConfigError
from harness.records import schema
from harness.space._params import SearchSpace

if TYPE_CHECKING:
    import optuna


class MethodSpace:
    """A conditional space: the fine-tuning method is a parameter (``method``), and each
    method's own parameters are sampled only in trials that chose it (define-by-run).

    In a sweep's YAML::

        methods:            # the peft config of each method (composed from conf/peft/)
        method_space:       # method -> its search space (dotted paths, as in search_space)
          lora: {train.learning_rate: {...}, peft.config.r: {...}}
          none: {train.learning_rate: {...}}
        search_space: {...} # optional: parameters every method shares

    A method's parameters are named ``<method>/<path>`` (one name per method and path, so
    each keeps its own distribution).
    """

    PARAM = schema.METHOD_PARAM

    def __init__(self, shared: SearchSpace | None, per_method: dict[str, SearchSpace]) -> None:
        self.shared = shared
        self.per_method = per_method

    @classmethod
    def from_config(cls, cfg: DictConfig) -> MethodSpace:
        spaces = cfg.get("method_space")
        methods = cfg.get("methods")
        if not isinstance(spaces, DictConfig) or len(spaces) == 0:
            raise ConfigError("method_space", "must map method names to search spaces")
        per_method = {}
        for key in spaces:
            name = str(key)
            if methods is None or name not in methods:
                known = ", ".join(map(str, methods or []))
                raise ConfigError(
                    f"method_space.{name}",
                    f"'{name}' has no peft config under methods (methods: {known})",
                )
            space = spaces[name]
            per_method[str(name)] = (
                SearchSpace.from_config(space, cls.config_for(cfg, name))
                if space
                else SearchSpace([])
            )
        shared = cfg.get("search_space")
        shared_space = SearchSpace.from_config(shared, cfg) if shared else None
        return cls(shared_space, per_method)

    @staticmethod
    def config_for(cfg: DictConfig, method: str) -> DictConfig:
        """A copy of ``cfg`` whose ``peft`` is the config of ``method``."""
        method_cfg = SearchSpace.apply(cfg, {})
        OmegaConf.update(method_cfg, "peft", cfg.methods[method], merge=False)
        return method_cfg

    def trial_configs(self, cfg: DictConfig) -> list[DictConfig]:
        """One config per method a trial can choose (each is checked before the study)."""
        return [self.config_for(cfg, method) for method in self.per_method]

    def param_names(self) -> list[str]:
        """Every param name a trial can record: ``method``, each method's ``<method>/<path>``
        and the shared ones."""
        names = [self.PARAM]
        for method, space in self.per_method.items():
            names += [f"{method}/{path}" for path in space.param_names()]
        return names + (self.shared.param_names() if self.shared is not None else [])

    # Any: the sampled values, as in SearchSpace.sample
    def sample(self, trial: optuna.Trial, cfg: DictConfig) -> tuple[DictConfig, dict[str, Any]]:
        method = str(trial.suggest_categorical(self.PARAM, list(self.per_method)))
        trial_cfg = self.config_for(cfg, method)
        logged: dict[str, Any] = {self.PARAM: method}
        values: dict[str, Any] = {}
        for param in self.per_method[method]:
            named = dataclasses.replace(param, path=f"{method}/{param.path}")
            values[param.path] = logged[named.path] = named.suggest(trial)
        if self.shared is not None:
            shared = self.shared.suggest(trial)
            values.update(shared)
            logged.update(shared)
        return SearchSpace.apply(trial_cfg, values), logged
