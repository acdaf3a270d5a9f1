"""Public names of the harness's errors (defined in :mod:`harness.base.errors`)."""

from harness.base.errors import ConfigError, StudyStopped

__all__ = ["ConfigError", "StudyStopped"]
