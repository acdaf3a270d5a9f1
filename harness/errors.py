"""The one error type for bad input: it names the config field or file at fault."""

from __future__ import annotations


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


def instantiate(field: str, node: object, **kwargs: object) -> object:
    """``hydra.utils.instantiate`` with errors that name ``field``.

    Hydra wraps whatever the target raises; a :class:`ConfigError` from the target comes out
    as itself, anything else as a ConfigError about ``field`` with the target's message.
    """
    from hydra.utils import instantiate as hydra_instantiate

    try:
        return hydra_instantiate(node, **kwargs)
    except Exception as exc:
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ConfigError):
                raise cause from None
            cause = cause.__cause__
        root = exc.__cause__ or exc
        lines = str(root).strip().splitlines()
        raise ConfigError(field, lines[-1] if lines else type(root).__name__) from exc


class StudyStopped(RuntimeError):
    """The study was stopped before reaching ``study.n_trials`` (e.g. its failure limit);
    ``summary`` says where it got to."""

    def __init__(self, message: str, summary: object) -> None:
        super().__init__(message)
        self.summary = summary
