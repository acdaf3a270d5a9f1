"""Optional dependencies, installed with an extra of the harness (``pip install
'harness[NAME]'``; a checkout's set-up installs them all): a setting that needs a missing one
is refused with one line naming the extra to install."""

from __future__ import annotations

import importlib

from harness.base.errors import ConfigError

# module -> (what it is, the extra that installs it)
EXTRAS = {
    "psycopg": ("the PostgreSQL driver", "postgres"),
    "cmaes": ("the cmaes package", "samplers"),
    "optuna_dashboard": ("optuna-dashboard", "dashboard"),
    "grpc": ("the gRPC client (grpcio)", "grpc"),
}
# a config's _target_ -> the optional module it needs
TARGETS = {"optuna.samplers.CmaEsSampler": "cmaes"}


def missing(module: str) -> bool:
    """Whether the optional ``module`` cannot be imported."""
    try:
        importlib.import_module(module)
    except ImportError:
        return True
    return False


def needs(field: str, setting: str, module: str) -> ConfigError:
    """The refusal of ``setting`` (given as ``field``) for want of ``module``."""
    what, extra = EXTRAS[module]
    return ConfigError(field, f"{setting} needs {what}: pip install 'harness[{extra}]'")


def check_target(field: str, target: str) -> None:
    """Refuse a config's ``_target_`` whose optional module is not installed."""
    module = TARGETS.get(target)
    if module is not None and missing(module):
        raise needs(field, target.rsplit(".", 1)[-1], module)


def missing_extra(exc: BaseException) -> str | None:
    """The optional module an ImportError (or one of its causes) is about, if it is one."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ImportError) and cause.name in EXTRAS:
            return cause.name
        cause = cause.__cause__ or cause.__context__
    return None
