"""Objects named in the config by ``_target_`` (samplers, pruners, data sources, peft configs,
the tracker), built with errors that name the config field."""

from __future__ import annotations

from hydra.utils import instantiate as hydra_instantiate

from harness.base.errors import ConfigError


def build(field: str, node: object, **kwargs: object) -> object:
    """``hydra.utils.instantiate`` with errors that name ``field``.

    Hydra wraps whatever the target raises; a :class:`ConfigError` from the target comes out
    as itself, anything else as a ConfigError about ``field`` with the target's message.
    """

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
