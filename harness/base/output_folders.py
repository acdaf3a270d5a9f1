"""Folders the harness replaces as a whole (the study report, an export): only its own.

Writing a report or an export replaces its folder. So that a mistyped ``report.dir`` or
``export.dir`` never deletes anything else, a folder is replaced only when it is new, empty, or
marked (``.harness-output.json``) as that kind of output of that study; an unmarked folder that
an older version wrote at the default place is recognised by what it holds. A folder that is,
or holds, something the study needs (its storage, the MLflow store or artifacts, the data cache,
the study's output folder, the working directory) is refused whatever it holds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from harness.base.errors import ConfigError
from harness.base.files import sqlite_path, storage_file

if TYPE_CHECKING:
    from omegaconf import DictConfig

MARKER = ".harness-output.json"
# What an unmarked report / export folder written by an older version holds.
_LEGACY = {"report": {"report.html", "trials.txt"}, "export": {"metrics.json", "labels.json"}}


def protected(cfg: DictConfig) -> dict[str, Path]:
    """What a replaced folder must never be or hold: {what it is: its path}."""
    places: dict[str, object] = {
        "the study storage (study.storage)": storage_file(str(cfg.study.storage)),
        "the MLflow store (tracking.uri)": sqlite_path(str(cfg.tracking.uri)),
        "the MLflow artifacts (tracking.artifact_location)": cfg.tracking.get("artifact_location"),
        "the data cache (data.source.cache_dir)": (cfg.data.get("source") or {}).get("cache_dir"),
        "the study's output folder (study.output_dir)": cfg.study.output_dir,
        "the working directory": os.getcwd(),
    }
    return {
        what: Path(str(path)).expanduser().resolve()
        for what, path in places.items()
        if path and "://" not in str(path)
    }


def check_replaceable(
    field: str, folder: Path, kind: str, study: str, cfg: DictConfig, default: Path | None = None
) -> None:
    """A ConfigError naming ``field`` unless ``folder`` may be replaced by this ``kind`` of
    output ("report", "export") of ``study``; nothing is written."""
    target = Path(folder).expanduser().resolve()
    for what, path in protected(cfg).items():
        if path == target or target in path.parents:
            holds = "is" if path == target else "holds"
            raise ConfigError(
                field,
                f"'{folder}' {holds} {what}: writing the {kind} there "
                f"would replace it; choose another {field}",
            )
    if not target.exists():
        return
    if not target.is_dir():
        raise ConfigError(field, f"'{folder}' is a file, not a folder")
    names = {p.name for p in target.iterdir()}
    if not names or _marked(target) == {"kind": kind, "study": study}:
        return
    legacy = default is not None and target == Path(default).expanduser().resolve()
    if legacy and MARKER not in names and _LEGACY[kind] <= names:
        return
    raise ConfigError(
        field,
        f"'{folder}' exists and is not the {kind} of study '{study}' "
        f"written by the harness (replacing it would delete what it "
        f"holds): choose a new or empty folder for {field}",
    )


def mark(scratch: Path, kind: str, study: str) -> None:
    """Mark a folder about to replace the old one as the ``kind`` output of ``study``."""
    (Path(scratch) / MARKER).write_text(json.dumps({"kind": kind, "study": study}) + "\n")


def _marked(folder: Path) -> dict[str, object] | None:
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None
