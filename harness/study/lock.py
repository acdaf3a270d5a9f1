"""A lock that every worker of a study shares: decisions that two workers must not take at once
(which paused trial is promoted) are taken under it.

Optuna's storage has no lock of its own; the harness takes the database's:

- SQLite (one machine): an exclusive ``flock`` on a file beside the database
  (``<database>.harness-lock``, empty, left in place);
- PostgreSQL: a session advisory lock (``pg_advisory_lock``) on a connection of its own;
- MySQL / MariaDB: a named lock (``GET_LOCK``);
- a journal file (``journal:///…``): an exclusive ``flock`` on a file beside the journal
  (``<journal>.harness-lock``), as SQLite's. Linux's NFS client takes an ``flock`` as an NFS
  lock on the server (NFSv4, or v3 with its lock daemon), so workers on several machines
  exclude each other there; a filesystem that refuses ``flock`` (ENOLCK, EOPNOTSUPP: Lustre
  mounted without ``-o flock``) gets one warning and a lock within this process only;
- a gRPC proxy (``grpc://…``): no database lock can be taken through Optuna's gRPC API, so the
  harness's proxy (``python -m harness.storage_proxy``) holds a lease per lock in memory,
  asked for and seen through study system attributes (:class:`harness.base.storages.LeasedStorage`):
  the one proxy decides, the holder renews the lease every few seconds while it holds it, and a
  holder that died loses it once the lease runs out (30 s). A proxy that is not the harness's
  keeps no leases: one warning, and a lock within this process only.

Each is released by the operating system or the server when its holder dies (``kill -9``
included: the file is closed, the connection dropped, the lease not renewed), so a lock is
never left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

from harness.base import storages
from harness.base.files import sqlite_path
from harness.base.storages import GrpcStorage, JournalFileStorage

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
    on it; an RDB storage, Optuna's cache around one, a journal file or a gRPC proxy opened by
    :func:`harness.base.storages.open_url`), for at most ``timeout`` seconds of waiting on
    PostgreSQL, MySQL and a gRPC proxy."""
    name = f"harness:{study_name}:{purpose}"
    if isinstance(storage, JournalFileStorage):
        with _file_lock(storage.path, "journal"):
            yield
        return
    if isinstance(storage, GrpcStorage):
        with _lease_lock(storage, study_name, purpose, timeout):
            yield
        return
    # Optuna's cache around an RDBStorage; an RDBStorage is the one with an engine
    backend = cast("RDBStorage", getattr(storage, "_backend", storage))
    url = str(getattr(backend, "url", ""))
    dialect = backend.engine.dialect.name if hasattr(backend, "engine") else ""
    if dialect == "sqlite":
        path = sqlite_path(url)
        lock = _file_lock(path, dialect) if path is not None else _thread_lock()
    elif dialect == "postgresql":
        lock = _postgres_lock(backend, name, timeout)
    elif dialect in ("mysql", "mariadb"):
        lock = _mysql_lock(backend, name, timeout)
    else:
        _warn_once(dialect or "this", "storage")
        lock = _thread_lock()
    with lock:
        yield


@contextlib.contextmanager
def _thread_lock() -> Iterator[None]:
    with _in_process:
        yield


def _warn_once(what: str, why: str) -> None:
    if what not in _warned:
        _warned.add(what)
        log.warning(
            "no study lock for %s %s: workers on other machines may take the same decision twice",
            what,
            why,
        )


@contextlib.contextmanager
def _file_lock(database: Path, what: str) -> Iterator[None]:
    import fcntl

    path = database.with_name(database.name + ".harness-lock")
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as exc:  # a filesystem without flock (Lustre without -o flock)
            _warn_once(what, f"storage ({path}: flock refused: {exc.strerror or exc})")
            with _thread_lock():
                yield
            return
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


LEASE_SECONDS = 30.0  # a lease not renewed for this long is free (its holder died)


@contextlib.contextmanager
def _lease_lock(
    storage: GrpcStorage, study_name: str, purpose: str, timeout: float
) -> Iterator[None]:
    """Hold the proxy's lease ``purpose`` on the study (see the module docstring)."""
    study_id = storage.get_study_id_from_name(study_name)
    key = storages.LEASE_PREFIX + purpose
    token = uuid.uuid4().hex
    ask = {"token": token, "seconds": LEASE_SECONDS}
    deadline = time.monotonic() + timeout
    pause = 0.05
    while True:
        storage.set_study_system_attr(study_id, key + storages.LEASE_ASK, ask)
        attrs = storage.get_study_system_attrs(study_id)
        if storages.LEASE_PROXY not in attrs:  # Optuna's own proxy: it keeps no leases
            _warn_once("a gRPC proxy without leases", "(not python -m harness.storage_proxy)")
            with _thread_lock():
                yield
            return
        if attrs.get(key) == token:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"could not take the study lock {purpose!r} in {timeout:.0f} s")
        time.sleep(pause)
        pause = min(1.0, pause * 2)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(LEASE_SECONDS / 6):
            with contextlib.suppress(Exception):  # the next renewal tries again
                storage.set_study_system_attr(study_id, key + storages.LEASE_ASK, ask)

    renewer = threading.Thread(target=renew, daemon=True, name=f"harness-lease-{purpose}")
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        storage.set_study_system_attr(study_id, key + storages.LEASE_FREE, token)


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
