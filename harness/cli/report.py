"""``python -m harness.report +sweep=NAME [key=value ...]``: the report of a study.

Takes the sweep's own overrides (so the same command line names the same study), or
``study.storage=URL study.name=NAME`` for any study in a storage. Prints the trials table and
writes ``report.dir`` (report.html, trials.txt, trials.csv, PNG plots); logs it to the study's
parent MLflow run when the tracking store has it. Exit status 2 on bad input.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from harness.base.errors import ConfigError
from harness.config import settings
from harness.config.command import CONF, run_command, run_hydra
from harness.records.lookup import load_study, open_tracker
from harness.report import Report, write_report


@hydra.main(version_base="1.3", config_path=CONF, config_name="report_cli")
def main(cfg: DictConfig) -> None:
    run_command(cfg, report_for)


def report_for(cfg: DictConfig) -> Report:
    """Load the study the config names and write its report."""
    settings(cfg, "report")
    study = load_study(cfg)
    try:
        return write_report(study, cfg, open_tracker(cfg, study))
    except OSError as exc:
        raise ConfigError(
            "report.dir", f"cannot write '{cfg.report.dir}': {exc.strerror or exc}"
        ) from None


def cli() -> None:
    run_hydra(main)


if __name__ == "__main__":
    cli()
