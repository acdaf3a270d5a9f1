"""One study per ``study.output_dir``: the folder says which study's checkpoints it holds, so
two studies never share (and so delete) each other's checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

from harness.base.errors import ConfigError

OWNER_FILE = ".harness-study.json"


def check_owner(output_dir: str, study_name: str) -> None:
    """A ConfigError when ``output_dir`` belongs to another study (nothing is written)."""
    owner = _owner(Path(output_dir))
    if owner is not None and owner != study_name:
        raise ConfigError("study.output_dir", f"'{output_dir}' holds the checkpoints of study "
                                              f"'{owner}': give study '{study_name}' a folder "
                                              "of its own (study.output_dir=...)")


def claim(output_dir: str, study_name: str) -> None:
    """Mark ``output_dir`` as ``study_name``'s (a folder from before the mark is adopted)."""
    folder = Path(output_dir)
    check_owner(output_dir, study_name)
    if _owner(folder) is None:
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f"{OWNER_FILE}.part"
        partial.write_text(json.dumps({"study": study_name}) + "\n")
        partial.replace(folder / OWNER_FILE)


def _owner(folder: Path) -> str | None:
    try:
        return str(json.loads((folder / OWNER_FILE).read_text())["study"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
