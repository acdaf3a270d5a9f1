"""A lock that every worker of a study shares: decisions that two workers must not take at once
(which paused trial is promoted) are taken under it.

Optuna's storage has no lock of its own; the harness takes the database's:

- SQLite (one machine): an exclusive ``flock`` on a file beside the database
  (``<database>.harness-lock``, empty, left in place);
- PostgreSQL: a session advisory lock (``pg_advisory_lock``) on a connection of its own;
- MySQL / MariaDB: a named lock (``GET_LOCK``).

Each is released by the operating system or the server when its holder dies (``kill -9``
included: the file is closed, the connection dropped), so a lock is never left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

from harness.base.files import sqlite_path

if TYPE_CHECKING:
    from optuna.storages import BaseStorage, RDBStorage

log = logging.getLogger(__name__)
_in_process = threading.Lock()  # an in-memory database: one process only
_warned: set[str] = set()


@contextlib.contextmanager
def study_lock(
    storage: BaseStorage, study_name: str, purpose: str, timeout: float = 600.0
) -> Iterator[None]:
    """Hold the lock ``purpose`` of study ``study_name`` in ``storage`` (every worker agrees
    on it; an RDB storage, or Optuna's cache around one), for at most ``timeout`` seconds of
    waiting on PostgreSQL and MySQL."""
    name = f"harness:{study_name}:{purpose}"
    # Optuna's cache around an RDBStorage; an RDBStorage is the one with an engine
    backend = cast("RDBStorage", getattr(storage, "_backend", storage))
    url = str(getattr(backend, "url", ""))
    dialect = backend.engine.dialect.name if hasattr(backend, "engine") else ""
    if dialect == "sqlite":
        path = sqlite_path(url)
        lock = _file_lock(path) if path is not None else _thread_lock()
    elif dialect == "postgresql":
        lock = _postgres_lock(backend, name, timeout)
    elif dialect in ("mysql", "mariadb"):
        lock = _mysql_lock(backend, name, timeout)
    else:
        if dialect not in _warned:
            _warned.add(dialect)
            log.warning(
                "no study lock for %s storage: workers on other machines may take the "
                "same decision twice",
                dialect or "this",
            )
        lock = _thread_lock()
    with lock:
        yield


@contextlib.contextmanager
def _thread_lock() -> Iterator[None]:
    with _in_process:
        yield


@contextlib.contextmanager
def _file_lock(database: Path) -> Iterator[None]:
    import fcntl

    path = database.with_name(database.name + ".harness-lock")
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _key(name: str) -> int:
    """A signed 64-bit key for PostgreSQL's advisory locks."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def _postgres_lock(storage: RDBStorage, name: str, timeout: float) -> Iterator[None]:
    from sqlalchemy import text

    with storage.engine.connect() as connection:
        connection.execute(text(f"SET lock_timeout = {int(timeout * 1000)}"))
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _key(name)})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _key(name)})
            connection.commit()


@contextlib.contextmanager
def _mysql_lock(storage: RDBStorage, name: str, timeout: float) -> Iterator[None]:
    from sqlalchemy import text

    short = hashlib.sha256(name.encode()).hexdigest()[:60]  # MySQL: at most 64 characters
    with storage.engine.connect() as connection:
        got = connection.execute(
            text("SELECT GET_LOCK(:name, :timeout)"), {"name": short, "timeout": int(timeout)}
        ).scalar()
        if got != 1:
            raise TimeoutError(f"could not take the study lock {name!r} in {timeout:.0f} s")
        try:
            yield
        finally:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": short})
