"""``python -m harness.export +sweep=NAME [export.dir=…] [key=value ...]``: the best trial's
model in a folder plain transformers (+ peft) loads (see :mod:`harness.export`). Exit status 2
on bad input."""

from __future__ import annotations

import os

import hydra
from omegaconf import DictConfig

from harness.config.command import CONF, run_command, run_hydra
from harness.export import export_model


@hydra.main(version_base="1.3", config_path=CONF, config_name="export_cli")
def main(cfg: DictConfig) -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    run_command(cfg, export_model)


def cli() -> None:
    run_hydra(main)


if __name__ == "__main__":
    cli()
