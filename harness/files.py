"""Folders written whole or not at all."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from pathlib import Path


def replace_folder(folder: Path, scratch: Path) -> None:
    """Put the finished folder ``scratch`` (a sibling of ``folder``) where ``folder`` is, as a
    whole: a reader sees the old folder or the new one, never a half-written one. Another
    process doing the same at the same moment may win; its folder then stands."""
    old = folder.with_name(f".{folder.name}-old-{uuid.uuid4().hex[:8]}")
    if folder.exists():
        folder.rename(old)
    with contextlib.suppress(OSError):
        scratch.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
