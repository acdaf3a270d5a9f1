"""A finished (or running) study, opened from its storage and MLflow store without creating
anything: for the report and the export."""

from __future__ import annotations

from typing import TYPE_CHECKING

import optuna

from harness.base.errors import ConfigError, first_line
from harness.base.files import sqlite_path, storage_file
from harness.base.objects import build
from harness.base.secrets import mask
from harness.base.storages import open_url
from harness.records import schema
from harness.records.tracker import Tracker

if TYPE_CHECKING:
    from omegaconf import DictConfig


def build_tracker(cfg: DictConfig) -> Tracker:
    """The study's tracker, from ``tracking`` (``conf/tracking/``) by its ``_target_``."""
    tracker = build("tracking", cfg.tracking)
    if not isinstance(tracker, Tracker):
        raise ConfigError("tracking", f"{type(tracker).__name__} is not a harness Tracker")
    return tracker


def load_study(cfg: DictConfig) -> optuna.Study:
    """The study ``study.name`` in ``study.storage``; a ConfigError naming the field when the
    storage or the study is not there (with the studies the storage does hold)."""

    url = str(cfg.study.storage)
    path = storage_file(url)
    if path is not None and not path.is_file():
        raise ConfigError(
            "study.storage",
            f"no study storage at '{url}': run the sweep first "
            "(or set study.storage to where it ran)",
        )
    try:
        storage = open_url(url, create=False)
        names = optuna.get_all_study_names(storage)
    except Exception as exc:
        raise ConfigError(
            "study.storage", mask(f"cannot open '{url}': {first_line(exc)}")
        ) from None
    name = str(cfg.study.name)
    if name not in names:
        there = ", ".join(sorted(names)) or "none"
        raise ConfigError(
            "study.name",
            mask(
                f"no study '{name}' in '{url}' (studies there: "
                f"{there}); pick one with study.name=NAME"
            ),
        )
    return optuna.load_study(study_name=name, storage=storage)


def open_tracker(cfg: DictConfig, study: optuna.Study) -> Tracker | None:
    """The study's MLflow side (its experiment and parent run), or None where the tracking
    store does not exist or does not hold the study's parent run."""
    path = sqlite_path(str(cfg.tracking.uri))
    if path is not None and not path.is_file():
        return None
    tracker = build_tracker(cfg)
    return tracker if tracker.attach(study.user_attrs.get(schema.PARENT_RUN_ATTR)) else None
