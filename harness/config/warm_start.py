"""The schema of ``study.warm_start``: another study whose best trials this one runs first.

A section of its own (``harness.config.schema`` lists it under ``study``); the trials are
chosen and queued by :mod:`harness.study.seeds`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.base.errors import ConfigError


@dataclass
class WarmStartConfig:
    name: str | None = None  # the other study (null: no warm start)
    storage: str | None = None  # its storage (null: study.storage)
    top_k: int = field(default=5, metadata={"must": "a positive integer", "min": 1})

    def __post_init__(self) -> None:
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise ConfigError("study.warm_start.top_k",
                              f"must be a positive integer, got {self.top_k!r}")
        if self.name is not None and not str(self.name).strip():
            raise ConfigError("study.warm_start.name", "must not be empty (null: no warm start)")
