"""A finished (or running) study, opened from its storage and MLflow store without creating
anything: for the report and the export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import ConfigError, first_line
from harness.secrets import mask


def load_study(cfg: Any) -> Any:
    """The study ``study.name`` in ``study.storage``; a ConfigError naming the field when the
    storage or the study is not there (with the studies the storage does hold)."""
    import optuna

    url = str(cfg.study.storage)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise ConfigError("study.storage", f"no study storage at '{url}': run the sweep first "
                                           "(or set study.storage to where it ran)")
    try:
        storage = optuna.storages.RDBStorage(url) if "://" in url else url
        names = optuna.get_all_study_names(storage)
    except Exception as exc:
        raise ConfigError("study.storage", mask(f"cannot open '{url}': {first_line(exc)}")) \
            from None
    name = str(cfg.study.name)
    if name not in names:
        there = ", ".join(sorted(names)) or "none"
        raise ConfigError("study.name", mask(f"no study '{name}' in '{url}' (studies there: "
                                             f"{there}); pick one with study.name=NAME"))
    return optuna.load_study(study_name=name, storage=storage)


def open_tracker(cfg: Any, study: Any) -> Any:
    """The study's MLflow side (its experiment and parent run), or None where the tracking
    store does not exist or does not hold the study's parent run."""
    from harness.study import PARENT_RUN_ATTR
    from harness.tracking import Tracker

    uri = str(cfg.tracking.uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None
    run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if not run_id:
        return None
    tracker = Tracker(uri, cfg.tracking.get("artifact_location"), str(cfg.study.name))
    try:
        run = tracker.client.get_run(run_id)
    except Exception:
        return None
    tracker.experiment_id = run.info.experiment_id
    tracker.parent_run_id = run_id
    return tracker
