"""The one error type for bad input: it names the config field or file at fault."""

from __future__ import annotations

from typing import Protocol


class ConfigError(ValueError):
    """Bad input. ``field`` is the dotted config path (or file) the message is about."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (library messages run to many lines)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class Formatted(Protocol):
    """Something that tells itself in lines (a study's summary)."""

    def format(self) -> str: ...


class StudyStopped(RuntimeError):
    """The study was stopped before reaching ``study.n_trials`` (e.g. its failure limit);
    ``summary`` says where it got to."""

    def __init__(self, message: str, summary: Formatted) -> None:
        super().__init__(message)
        self.summary = summary
