"""Reading the harness's typed settings from a composed config, and turning OmegaConf's type
errors into the harness's one-line form ("FIELD: must be …, got VALUE")."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harness.base.errors import ConfigError
from harness.config.schema import PLOTS, SECTIONS, TrainOptions


def settings(cfg: DictConfig, section: str) -> Any:  # Any: the section's own dataclass
    """``cfg.<section>`` as its dataclass, its ranges checked (a ConfigError naming the field)."""
    node = cfg.get(section)
    try:
        return OmegaConf.to_object(node)
    except OmegaConfBaseException as exc:
        raise as_config_error(exc, f"{section}.") from None


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
