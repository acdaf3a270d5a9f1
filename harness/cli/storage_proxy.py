"""``python -m harness.storage_proxy --storage URL [--host H] [--port P]``: Optuna's gRPC storage
proxy in front of an RDB storage, for workers that reach the study through
``study.storage=grpc://HOST:PORT`` (many workers, one database connection pool; the workers need
no database driver or credentials). It also keeps the leases of the harness's study lock
(:class:`harness.base.storages.LeasedStorage`). Run one proxy per storage."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from types import FrameType

from harness.base.errors import ConfigError, first_line
from harness.base.extras import missing_extra, needs
from harness.base.files import sqlite_path
from harness.base.progress import configure_logging
from harness.base.secrets import mask, register
from harness.base.storages import LeasedStorage, kind

log = logging.getLogger("harness.storage_proxy")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness.storage_proxy",
        description="Serve an Optuna RDB storage over gRPC (Optuna's storage proxy) to workers "
        "that set study.storage=grpc://HOST:PORT. Runs until Ctrl-C or SIGTERM.",
        epilog="Example: python -m harness.storage_proxy --storage "
        "postgresql://user@db/optuna --host 0.0.0.0 --port 13000",
    )
    p.add_argument(
        "--storage",
        required=True,
        help="the RDB storage URL behind the proxy (sqlite:///…, postgresql://…, mysql://…)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 for workers on other machines: "
        "the proxy has no authentication, keep it inside the cluster's network)",
    )
    p.add_argument("--port", type=int, default=13000, help="port to listen on (default 13000)")
    p.add_argument("--threads", type=int, default=16, help="threads serving requests (default 16)")
    return p


def serve(url: str, host: str, port: int, threads: int) -> None:
    """Serve ``url`` until SIGTERM / Ctrl-C; a ConfigError when it cannot."""
    if kind(url) != "rdb":
        raise ConfigError(
            "--storage",
            f"'{url}': the proxy serves an RDB storage (sqlite:///…, postgresql://…, "
            "mysql://…); Optuna's gRPC proxy does not support a journal (optuna#6084), and a "
            "proxy in front of a proxy gains nothing",
        )
    path = sqlite_path(url)
    try:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        storage = LeasedStorage(url)  # creates the tables: workers find them made
        from optuna.storages._grpc.server import make_server

        server = make_server(storage, host, port, ThreadPoolExecutor(max_workers=threads))
    except Exception as exc:
        extra = missing_extra(exc)
        if extra:
            raise needs("--storage", "the gRPC storage proxy", extra) from None
        raise ConfigError("--storage", mask(f"cannot serve '{url}': {first_line(exc)}")) from None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    server.start()
    log.info("gRPC storage proxy for %s listening on %s:%d", mask(url), host, port)
    print(f"listening on {host}:{port}", flush=True)  # the line a script can wait for
    stop.wait()
    log.info("stopping the gRPC storage proxy")
    server.stop(grace=5).wait()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    configure_logging()
    register([args.storage])
    try:
        serve(args.storage, args.host, args.port, args.threads)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
