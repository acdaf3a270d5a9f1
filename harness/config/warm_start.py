"""The schema of ``study.enqueue`` and ``study.warm_start``: trials a study runs first.

``StudySeeds`` holds the two settings for ``harness.config.schema.StudyConfig`` (a base of it);
the trials are chosen and queued by :mod:`harness.study.enqueued`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.base.errors import ConfigError


@dataclass
class WarmStartConfig:
    name: str | None = None  # the other study (null: no warm start)
    storage: str | None = None  # its storage (null: study.storage)
    top_k: int = field(default=5, metadata={"must": "a positive integer", "min": 1})

    def __post_init__(self) -> None:
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise ConfigError(
                "study.warm_start.top_k", f"must be a positive integer, got {self.top_k!r}"
            )
        if self.name is not None and not str(self.name).strip():
            raise ConfigError("study.warm_start.name", "must not be empty (null: no warm start)")


@dataclass
class StudySeeds:
    # parameter sets to run first ({param name: value}; checked against the search space)
    enqueue: list[dict[str, Any]] = field(
        default_factory=list, metadata={"must": "a list of parameter sets ([{name: value, …}, …])"}
    )
    warm_start: WarmStartConfig = field(default_factory=WarmStartConfig)
