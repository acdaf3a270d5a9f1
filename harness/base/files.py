"""Files and folders: written whole or not at all, checked writable before anything is made,
and the local file behind a ``sqlite:///`` or ``journal:///`` URL."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

from harness.base.errors import ConfigError


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


def check_writable(field: str, folder: str | Path) -> None:
    """``folder`` can be created and written to (checked with a probe; nothing is left)."""
    path = Path(str(folder)).expanduser()
    created = [p for p in (path, *path.parents) if not p.exists()]
    probe = path / f".harness-probe-{os.getpid()}"
    try:
        for attempt in range(3):
            try:
                path.mkdir(parents=True, exist_ok=True)
                probe.write_text("")
                break
            except (FileNotFoundError, FileExistsError):
                # another worker's check, started at the same moment, removed the folder it had
                # made (below) between our mkdir and our probe (FileNotFoundError), or between
                # its own mkdir and ours, which then finds a name but no folder (Path.mkdir's
                # FileExistsError): make it again. A file of that name fails all three tries.
                if attempt == 2:
                    raise
        probe.unlink()
    except OSError as exc:
        raise ConfigError(field, f"cannot write to '{folder}': {exc.strerror or exc}") from None
    finally:
        for made in created:  # made again when something is written there
            with contextlib.suppress(OSError):
                made.rmdir()


def check_sqlite_writable(field: str, url: str) -> None:
    """An existing SQLite database file (or Optuna journal file) behind ``url`` can be written
    (a read-only file fails only once a study writes to it, after the data and model were
    prepared)."""
    path = storage_file(url)
    if path is None or not path.is_file():
        return
    mode = path.stat().st_mode
    if not mode & 0o222 or not os.access(path, os.W_OK):
        raise ConfigError(
            field,
            f"'{path}' is read-only (mode {mode & 0o777:o}): make it "
            "writable (chmod u+w) or choose another file",
        )


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` URL (SQLAlchemy's parser); None for other
    URLs and for an in-memory database."""
    # sqlalchemy takes 0.1 s to import: only where a store is opened, not on a config error
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(str(url))
    except (ArgumentError, ValueError):
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser()


JOURNAL_PREFIX = "journal:///"


def journal_path(url: str) -> Path | None:
    """The journal file of a ``journal:///PATH`` URL (Optuna's ``JournalFileBackend``), read as
    SQLite's: ``journal:///sweeps/optuna.log`` is relative to the working directory,
    ``journal:////shared/optuna.log`` absolute; None for other URLs (and for a journal URL
    with a host or without a path, which :func:`harness.base.storages.check_url` refuses)."""
    url = str(url)
    if not url.startswith(JOURNAL_PREFIX) or url == JOURNAL_PREFIX:
        return None
    return Path(url[len(JOURNAL_PREFIX) :]).expanduser()


def storage_file(url: str) -> Path | None:
    """The local file a storage URL keeps its study in: the SQLite database or the journal
    file; None for a server (PostgreSQL, MySQL, a gRPC proxy) and an in-memory database."""
    return journal_path(url) or sqlite_path(url)
