"""Reaching the MLflow store: is a server there (asked before anything is created, in seconds:
MLflow's own client retries for minutes); a client whose new SQLite store is made safely."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.base.errors import ConfigError
from harness.base.files import sqlite_path
from harness.base.secrets import mask

if TYPE_CHECKING:
    from mlflow import MlflowClient


def connect(uri: str) -> MlflowClient:
    """An ``MlflowClient`` for ``uri``. Its constructor creates (migrates) a new SQLite store's
    tables: processes starting together take turns (migrations run at the same moment fail
    with "duplicate column" and can leave the store half-made)."""
    from mlflow.tracking import MlflowClient

    path = sqlite_path(uri)
    if path is None:
        return MlflowClient(tracking_uri=uri)
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock", timeout=300):
        return MlflowClient(tracking_uri=uri)


def reach_server(uri: str, timeout: float = 5.0) -> None:
    """An MLflow server answers at ``uri`` (its /health page), or a ConfigError."""
    import base64
    import urllib.request
    from urllib.error import HTTPError
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    try:
        host = parts.hostname or ""
        netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    except ValueError:  # a URL MLflow will judge itself
        return
    request = urllib.request.Request(
        urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    )
    if parts.username:  # credentials in the URL: as HTTP basic auth, not in the address
        token = base64.b64encode(f"{parts.username}:{parts.password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return
    except HTTPError:  # it answered (a proxy, an older server): MLflow decides
        return
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(
            "tracking.uri", mask(f"cannot reach '{uri}' within {timeout:.0f} s: {reason}")
        ) from None
