"""Passwords in storage and tracking URLs never leave the process in clear.

``postgresql://user:secret@host/db`` is shown as ``postgresql://user:***@host/db`` in everything
the harness writes (summaries, errors, the config artifact in MLflow) and, inside
:func:`masked_output`, in everything anyone writes to stdout, stderr or the log.
"""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO
from urllib.parse import unquote

MASK = "***"
# scheme://user:password@  (the password part is replaced; as SQLAlchemy's URL parser reads
# it, a password may hold '/': postgresql://u:ab/cd@host/db)
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<password>[^@\s]+)@")
_known: set[str] = set()


def register(urls: Iterable[Any]) -> None:
    """Remember the passwords of these URLs, so they are masked wherever they turn up
    (also where a library prints them without the URL around them)."""
    for url in urls:
        if not isinstance(url, str):
            continue
        passwords = {found["password"] for found in _USERINFO.finditer(url)}
        try:  # a database URL as SQLAlchemy (and so Optuna's storage) reads it
            from sqlalchemy.engine import make_url

            passwords.add(make_url(url).password or "")
        except Exception:  # not a URL of its own (an override such as key=URL, a path)
            pass
        _known.update({p for password in passwords if password
                       for p in (password, unquote(password))})


def mask(text: str) -> str:
    """``text`` with URL passwords and every registered password replaced by ``***``."""
    text = _USERINFO.sub(lambda m: f"{m['head']}{MASK}@", text)
    for secret in sorted(_known, key=len, reverse=True):
        if len(secret) >= 3:  # a 1-2 character "password" would mask half of every line
            text = text.replace(secret, MASK)
    return text


class _MaskingStream(io.TextIOBase):
    """A text stream that masks what goes through it (stdout, stderr).

    Once the reader of the stream has gone (a worker whose launcher died: a broken pipe; a
    closed terminal: an I/O error), what is written is dropped instead of raising in the middle
    of recording a trial."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._gone = False

    def write(self, text: str) -> int:
        self._unless_gone(self._stream.write, mask(text))
        return len(text)

    def flush(self) -> None:
        self._unless_gone(self._stream.flush)

    def _unless_gone(self, call: Any, *args: Any) -> None:
        if not self._gone:
            try:
                call(*args)
            except OSError:
                self._gone = True

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


@contextmanager
def masked_output(urls: Iterable[Any]) -> Iterator[None]:
    """Mask the passwords of ``urls`` (and any URL password) on stdout, stderr and in log
    records while the block runs."""
    register(urls)
    stdout, stderr = sys.stdout, sys.stderr
    log_filter = _MaskingFilter()
    handlers = logging.getLogger().handlers
    for handler in handlers:
        handler.addFilter(log_filter)
    sys.stdout, sys.stderr = _MaskingStream(stdout), _MaskingStream(stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        for handler in handlers:
            handler.removeFilter(log_filter)


def config_urls(cfg: Any) -> list[Any]:
    """The storage and tracking URLs (their passwords are masked in all output)."""
    urls = []
    for key in ("study.storage", "tracking.uri"):
        try:
            node: Any = cfg
            for part in key.split("."):
                node = node.get(part)
            urls.append(node)
        except Exception:  # a malformed config: validation reports it
            continue
    return urls
