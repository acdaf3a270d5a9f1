"""Entry point: ``python -m harness.sweep +sweep=NAME [key=value ...]`` (``--help`` for more).

Composes the config with Hydra, runs or resumes the study, prints its summary. Bad input ends
with one line naming the field or file at fault and exit status 2, with nothing created.
"""

from __future__ import annotations

import shlex
import sys

import hydra
from omegaconf import DictConfig

import harness  # noqa: F401  (registers the config resolvers)
from harness.errors import ConfigError


def resume_command() -> str:
    """The command line that reruns (and so resumes) this study."""
    from hydra.core.hydra_config import HydraConfig

    overrides = list(HydraConfig.get().overrides.task)
    return " ".join(["python -m harness.sweep", *map(shlex.quote, overrides)])


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from harness.progress import configure_logging

    configure_logging()
    from harness.study import run_sweep

    try:
        summary = run_sweep(cfg, resume_command=resume_command())
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("\ninterrupted: finished trials are kept; rerun the same command to resume",
              file=sys.stderr)
        sys.exit(130)
    print(summary.format())


if __name__ == "__main__":
    main()
