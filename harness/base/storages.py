"""The Optuna storage behind a ``study.storage`` URL: every place that opens a study's storage
from its URL opens it here, so that one URL means the same storage everywhere.

- ``sqlite:///…``, ``postgresql://…``, ``mysql://…`` (any SQLAlchemy URL): Optuna's
  ``RDBStorage``, with Optuna's own heartbeat;
- ``journal:///PATH``: a journal file (``JournalStorage`` over ``JournalFileBackend``), for a
  cluster with a shared filesystem and no database server. Paths read as SQLite's:
  ``journal:///sweeps/optuna.log`` relative to the working directory, ``journal:////abs/x.log``
  absolute. Writers take Optuna's ``JournalFileSymlinkLock`` (the backend's default): a
  ``symlink()`` is atomic on every NFS version (v2 on), where ``O_EXCL`` (``JournalFileOpenLock``)
  needs NFSv3 and ``fcntl`` locks need a working lock daemon;
- ``grpc://HOST:PORT``: Optuna's ``GrpcStorageProxy``, a client of the gRPC proxy that
  ``python -m harness.storage_proxy`` runs in front of an RDB (for hundreds of workers).

Optuna 5.1 gives heartbeats (``BaseHeartbeat``) to ``RDBStorage`` only (optuna#6615 asks for
the journal's). The journal and gRPC storages here get the same heartbeat from the harness: a
running trial's beat is a trial system attribute (``harness:heartbeat``: the trial id and the
writer's wall clock), and a trial whose last beat is older than the grace period is stale.
Optuna's own heartbeat thread and ``fail_stale_trials`` then work on them as on an RDB. The clocks
of the machines must agree (NTP) to well within the grace period.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import BaseStorage, GrpcStorageProxy, RDBStorage, _CachedStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from harness.base.errors import ConfigError
from harness.base.files import (
    JOURNAL_PREFIX,
    check_sqlite_writable,
    check_writable,
    journal_path,
    sqlite_path,
)
from harness.base.secrets import mask

StaleCallback = Callable[[optuna.Study, FrozenTrial], None]

GRPC_PREFIX = "grpc://"
HEARTBEAT_ATTR = "harness:heartbeat"  # a trial system attribute: {"trial_id": …, "time": …}
# the study lock over a gRPC proxy (harness.study.lock): a lease the harness's proxy holds,
# asked for and read through study system attributes (the only channel Optuna's gRPC API has)
LEASE_PREFIX = "harness:lease:"  # + purpose: the holder's token (read from the proxy)
LEASE_ASK = ":ask"  # LEASE_PREFIX + purpose + LEASE_ASK = {"token": …, "seconds": …}
LEASE_FREE = ":free"  # LEASE_PREFIX + purpose + LEASE_FREE = token
LEASE_PROXY = "harness:lease-proxy"  # present where the proxy keeps leases
GRPC_CONNECT_TIMEOUT = 20.0  # seconds a gRPC proxy has to answer when a storage opens


def kind(url: str) -> str:
    """``journal``, ``grpc`` or ``rdb`` (anything else: SQLAlchemy's URL, checked by Optuna)."""
    url = str(url)
    if url.startswith("journal:"):
        return "journal"
    if url.startswith("grpc:"):
        return "grpc"
    return "rdb"


def grpc_address(url: str, field: str = "study.storage") -> tuple[str, int]:
    """``(host, port)`` of a ``grpc://HOST:PORT`` URL; a ConfigError naming ``field`` when it
    has no host or no port."""
    from urllib.parse import urlsplit

    parts = urlsplit(str(url))
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "grpc" or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ConfigError(
            field,
            f"'{url}' is not a gRPC proxy address: give grpc://HOST:PORT (the proxy that "
            "python -m harness.storage_proxy starts, e.g. grpc://login-node:13000)",
        )
    return parts.hostname, port


def check_url(field: str, url: str) -> None:
    """Refuse a storage URL that cannot open, before anything is made: an unknown scheme, a
    journal file whose folder cannot be created or written (or a read-only journal file), a
    gRPC address without a port, a read-only SQLite file."""
    url = str(url)
    which = kind(url)
    if which == "journal":
        path = journal_path(url)
        if path is None:
            raise ConfigError(
                field,
                f"'{url}' names no journal file: journal:///relative/path.log (from the "
                "working directory) or journal:////absolute/path.log, as sqlite:/// URLs",
            )
        try:
            check_writable(field, path.parent)
        except ConfigError as exc:
            raise ConfigError(field, f"cannot use '{url}': {exc.message}") from None
        if path.is_dir():
            raise ConfigError(field, f"'{url}': '{path}' is a folder, not a journal file")
        check_sqlite_writable(field, url)
        return
    if which == "grpc":
        grpc_address(url, field)
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(url).get_dialect()
    except (ArgumentError, ValueError, NoSuchModuleError) as exc:
        scheme = url.split("://", 1)[0] if "://" in url else url
        raise ConfigError(
            field,
            mask(
                f"cannot open '{url}': not a storage URL ({scheme!r} is no database "
                f"SQLAlchemy knows: {type(exc).__name__}): use sqlite:///PATH, postgresql://…, "
                "mysql://…, journal:///PATH or grpc://HOST:PORT"
            ),
        ) from None
    except ImportError:  # a known database whose driver is missing: said when it opens
        pass
    check_sqlite_writable(field, url)


def open_url(
    url: str,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    stale_callback: StaleCallback | None = None,
    create: bool = True,
) -> BaseStorage:
    """The Optuna storage ``url`` names (with a heartbeat every ``heartbeat_interval`` seconds
    where one is given; ``stale_callback`` runs for each trial failed as stale). ``create``:
    make a missing journal file (and its folder); without it a missing one is a
    FileNotFoundError (nothing is written). Errors are Optuna's and the drivers' (a missing
    driver an ImportError naming its module)."""
    url = str(url)
    which = kind(url)
    if which == "journal":
        path = journal_path(url)
        if path is None:
            raise ValueError(f"no journal file in '{url}'")
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.is_file():
            raise FileNotFoundError(f"no journal file at '{path}'")
        return JournalFileStorage(
            path,
            url=url,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            stale_callback=stale_callback,
        )
    if which == "grpc":
        host, port = grpc_address(url)
        importlib.import_module("grpc")  # the optional grpcio: an ImportError names it
        proxy = GrpcStorage(
            host=host,
            port=port,
            url=url,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            stale_callback=stale_callback,
        )
        try:
            proxy.wait_server_ready(timeout=GRPC_CONNECT_TIMEOUT)
        except ConnectionError:
            proxy.close()
            raise ConnectionError(
                f"no gRPC storage proxy answers at {host}:{port} within "
                f"{GRPC_CONNECT_TIMEOUT:.0f} s (start one: python -m harness.storage_proxy "
                f"--storage URL --port {port})"
            ) from None
        return proxy
    with warnings.catch_warnings():  # the heartbeat is "experimental" since Optuna 2.8
        warnings.simplefilter("ignore", ExperimentalWarning)
        return RDBStorage(
            url,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=stale_callback,
            # SQLite: wait for a lock (the heartbeat thread and other workers write too)
            engine_kwargs={"connect_args": {"timeout": 60}} if sqlite_path(url) else {},
        )


def load_study(url: str, name: str) -> optuna.Study:
    """The study ``name`` in the storage ``url`` (a KeyError when it is not there; nothing is
    created: a missing journal file is a FileNotFoundError)."""
    return optuna.load_study(study_name=name, storage=open_url(url, create=False))


def dashboard_command(url: str) -> str | None:
    """The optuna-dashboard command line for a storage (it reads a journal file by its path),
    or None where the dashboard cannot open it (a gRPC proxy)."""
    which = kind(url)
    if which == "grpc":
        return None
    if which == "journal":
        return f"optuna-dashboard {journal_path(url)}"
    return f"optuna-dashboard {url}"


# ----------------------------------------------------------------------------- heartbeats


class _Beats(BaseHeartbeat):
    """Optuna's heartbeat (``BaseHeartbeat``) kept in trial system attributes, for a storage
    that has none of its own (mixed into one; see the module docstring)."""

    url: str
    _interval: int | None
    _grace: int | None
    _callback: StaleCallback | None

    def _init_beats(
        self,
        url: str,
        heartbeat_interval: int | None,
        grace_period: int | None,
        stale_callback: StaleCallback | None,
    ) -> None:
        self.url = url
        self._interval = heartbeat_interval
        self._grace = grace_period
        self._callback = stale_callback

    def _storage(self) -> BaseStorage:
        assert isinstance(self, BaseStorage)
        return self

    def record_heartbeat(self, trial_id: int) -> None:
        # another worker failed it (or it ended): nothing to beat for
        with contextlib.suppress(UpdateFinishedTrialError):
            self._storage().set_trial_system_attr(
                trial_id, HEARTBEAT_ATTR, {"trial_id": trial_id, "time": time.time()}
            )

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """The RUNNING trials whose last beat is older than the grace period (a trial without
        a beat of its own is not stale, Optuna's rule for an RDB; a retry carries its failed
        trial's system attributes, so a beat counts only under its own trial id)."""
        assert self._interval is not None
        grace = self._grace if self._grace is not None else 2 * self._interval
        now = time.time()
        stale = []
        running = self._storage().get_all_trials(
            study_id, deepcopy=False, states=(TrialState.RUNNING,)
        )
        for trial in running:
            beat = trial.system_attrs.get(HEARTBEAT_ATTR)
            if not isinstance(beat, dict) or beat.get("trial_id") != trial._trial_id:
                continue
            if now - float(beat.get("time", now)) > grace:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self._interval

    def get_heartbeat_stale_trial_callback(self) -> StaleCallback | None:
        return self._callback


class JournalFileStorage(_Beats, JournalStorage):
    """A journal file (``JournalStorage``) with the harness's heartbeat and its URL."""

    def __init__(
        self,
        path: Path,
        *,
        url: str,
        heartbeat_interval: int | None = None,
        grace_period: int | None = None,
        stale_callback: StaleCallback | None = None,
    ) -> None:
        backend = JournalFileBackend(str(path), lock_obj=JournalFileSymlinkLock(str(path)))
        JournalStorage.__init__(self, backend)
        self._init_beats(url, heartbeat_interval, grace_period, stale_callback)
        self.path = path


class GrpcStorage(_Beats, GrpcStorageProxy):
    """A client of a gRPC storage proxy with the harness's heartbeat and its URL."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        url: str,
        heartbeat_interval: int | None = None,
        grace_period: int | None = None,
        stale_callback: StaleCallback | None = None,
    ) -> None:
        with warnings.catch_warnings():  # GrpcStorageProxy is "experimental" (Optuna 4.2)
            warnings.simplefilter("ignore", ExperimentalWarning)
            GrpcStorageProxy.__init__(self, host=host, port=port)
        self._init_beats(url, heartbeat_interval, grace_period, stale_callback)


# ----------------------------------------------------------------------------- the proxy's leases


class LeasedStorage(_CachedStorage):
    """What the harness's gRPC proxy serves: Optuna's cached RDB storage (what Optuna's
    ``get_storage`` gives for a URL) that also keeps the study locks' leases (:class:`_Leases`)
    in memory, for its clients' :func:`harness.study.lock.study_lock`."""

    def __init__(self, url: str) -> None:
        rdb = open_url(url)  # an RDB URL (the proxy refuses others); SQLite waits for its lock
        assert isinstance(rdb, RDBStorage)
        super().__init__(rdb)
        self._leases = _Leases()

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        if key.startswith(LEASE_PREFIX) and self._leases.handle(study_id, key, value):
            return
        super().set_study_system_attr(study_id, key, value)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return {**super().get_study_system_attrs(study_id), **self._leases.view(study_id)}


class _Leases:
    """The study locks' leases a proxy holds: per (study, purpose) one holder's token until it
    frees it or its lease runs out (its process died); asked for by writing study system
    attributes (``…:ask``, ``…:free``), seen as ``harness:lease:<purpose>`` when reading them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[tuple[int, str], tuple[str, float]] = {}  # -> (token, until)

    def handle(self, study_id: int, key: str, value: Any) -> bool:
        """Apply an ask or a free; False for a key that is neither (stored as it is)."""
        name = key[len(LEASE_PREFIX) :]
        now = time.monotonic()
        with self._lock:
            if name.endswith(LEASE_ASK) and isinstance(value, dict):
                purpose = name[: -len(LEASE_ASK)]
                held = self._held.get((study_id, purpose))
                if held is None or held[1] < now or held[0] == value.get("token"):
                    until = now + float(value.get("seconds", 60))
                    self._held[(study_id, purpose)] = (str(value.get("token")), until)
                return True
            if name.endswith(LEASE_FREE):
                purpose = name[: -len(LEASE_FREE)]
                held = self._held.get((study_id, purpose))
                if held is not None and held[0] == value:
                    del self._held[(study_id, purpose)]
                return True
        return False

    def view(self, study_id: int) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            held = {
                LEASE_PREFIX + purpose: token
                for (sid, purpose), (token, until) in self._held.items()
                if sid == study_id and until >= now
            }
        return {LEASE_PROXY: 1, **held}


__all__ = [
    "GRPC_PREFIX",
    "JOURNAL_PREFIX",
    "check_url",
    "dashboard_command",
    "grpc_address",
    "kind",
    "load_study",
    "open_url",
]
