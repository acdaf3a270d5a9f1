"""Passwords in storage and tracking URLs never leave the process in clear.

``postgresql://user:secret@host/db`` is shown as ``postgresql://user:***@host/db``, and
``postgresql://user@host/db?password=secret`` as ``…?password=***`` (any query-string parameter
named like a secret: password, pwd, secret, token, api_key, key, sig, …), in everything the
harness writes (summaries, errors, the config artifact in MLflow) and, inside
:func:`masked_output`, in everything anyone writes to stdout, stderr or the log.
"""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import unquote, unquote_plus

if TYPE_CHECKING:
    from omegaconf import DictConfig

MASK = "***"
# scheme://user:password@  (the password part is replaced; as SQLAlchemy's URL parser reads
# it, a password may hold '/': postgresql://u:ab/cd@host/db)
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<password>[^@\s]+)@")
# The name of a query-string parameter that holds a secret (any case, '-', '_' or '.' between
# words): password, passwd, passphrase, sslpassword, pwd, secret, client_secret, token,
# access_token, X-Amz-Security-Token, signature, credential(s), api_key, apikey, access_key,
# … and, as a whole word, pass, sig and key. Not sslkey or passfile: paths of files.
_SECRET_NAME = (
    r"[\w.\-]*?(?:pass(?:word|wd|phrase)|pwd|secret|token|signature|credentials?"
    r"|(?:api|access|secret|private|account|client|auth|subscription|shared|master)"
    r"[_.\-]?key)|(?:[\w.\-]*[_.\-])?(?:pass|sig|key)"
)
# ?password=…  &token=…  ;pwd=…  (the value up to the next parameter, fragment, space or quote)
_QUERY = re.compile(rf"(?P<head>[?&;](?:{_SECRET_NAME})=)(?P<password>[^&#\s'\"]+)", re.IGNORECASE)
# values of such parameters that are settings, not secrets (?use_token=true): never registered,
# or every 'true' would be masked
_NOT_SECRETS = {"true", "false", "yes", "no", "on", "off", "none", "null"}
_known: set[str] = set()


def register(urls: Iterable[object]) -> None:
    """Remember the passwords of these URLs, so they are masked wherever they turn up
    (also where a library prints them without the URL around them)."""
    for url in urls:
        if not isinstance(url, str):
            continue
        passwords = {
            found["password"] for pattern in (_USERINFO, _QUERY) for found in pattern.finditer(url)
        }
        try:  # a database URL as SQLAlchemy (and so Optuna's storage) reads it
            if "://" not in url:  # not a URL: spares a config error SQLAlchemy's 0.15 s import
                raise ValueError(url)
            from sqlalchemy.engine import make_url

            parsed = make_url(url)
            passwords.add(parsed.password or "")
            for name, values in parsed.query.items():
                if re.fullmatch(_SECRET_NAME, name, re.IGNORECASE):
                    passwords.update([values] if isinstance(values, str) else values)
        except Exception:  # not a URL of its own (an override such as key=URL, a path)
            pass
        # as written, and decoded as the drivers read it (libpq: %XX; SQLAlchemy: also '+')
        _known.update(
            {
                p
                for password in passwords
                if password
                for p in (password, unquote(password), unquote_plus(password))
                if p.lower() not in _NOT_SECRETS
            }
        )


def mask(text: str) -> str:
    """``text`` with URL passwords (user:password@, ?password=…) and every registered password
    replaced by ``***``."""
    text = _USERINFO.sub(lambda m: f"{m['head']}{MASK}@", text)
    text = _QUERY.sub(lambda m: f"{m['head']}{MASK}", text)
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

    def _unless_gone(self, call: Callable[..., object], *args: object) -> None:
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

    def __getattr__(self, name: str) -> Any:  # Any: whatever the wrapped stream has
        return getattr(self._stream, name)


class _MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


@contextmanager
def masked_output(urls: Iterable[object]) -> Iterator[None]:
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


def config_urls(cfg: DictConfig) -> list[object]:
    """The storage and tracking URLs (their passwords are masked in all output)."""
    urls: list[object] = []
    for key in ("study.storage", "tracking.uri"):
        try:
            node: Any = cfg  # Any: a config node (malformed configs included)
            for part in key.split("."):
                node = node.get(part)
            urls.append(node)
        except Exception:  # a malformed config: validation reports it
            continue
    return urls
