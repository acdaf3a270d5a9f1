"""Entry point: ``python -m harness.sweep +sweep=NAME [key=value ...]`` (``--help`` for more).

Composes the config with Hydra, runs or resumes the study, prints its summary. Bad input, Hydra's
own composition errors included, ends with one line naming the field or file at fault and exit
status 2, with nothing created. Ctrl-C / SIGTERM / SIGHUP stop within seconds (exit 130 / 143 /
129) and print the command that resumes; a study stopped by its failure limit exits with 1.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from harness.base import distributed
from harness.base.devices import narrow_devices, plan_workers
from harness.base.errors import ConfigError, StudyStopped
from harness.base.interrupts import raise_on_signals
from harness.base.progress import configure_logging, log_level
from harness.base.secrets import config_urls, mask, masked_output, register
from harness.config import check_sections
from harness.config.command import CONF, run_hydra
from harness.config.space_overrides import replace_entries


def command_args() -> list[str]:
    """This command's arguments as Hydra read them: ``--config-dir`` / ``--config-name`` when
    given (a user's own config folder), then the overrides. Workers and "Resume with:" use them."""
    hydra_cfg = HydraConfig.get()
    args = [
        f"--config-dir={source.path}"
        for source in hydra_cfg.runtime.config_sources
        if source.provider == "command-line" and source.schema == "file"
    ]
    if hydra_cfg.job.config_name not in (None, "config"):
        args.append(f"--config-name={hydra_cfg.job.config_name}")
    return args + list(hydra_cfg.overrides.task)


def resume_command() -> str:
    """The command line that reruns (and so resumes) this study (under torchrun: torchrun's)."""
    launcher = "python -m harness.sweep"
    if distributed.launched():
        ranks = os.environ.get("LOCAL_WORLD_SIZE") or distributed.world().size
        launcher = f"torchrun --nproc_per_node={ranks} -m harness.sweep"
    return " ".join([launcher, *map(shlex.quote, command_args())])


@hydra.main(version_base="1.3", config_path=CONF, config_name="config")
def main(cfg: DictConfig) -> None:
    try:  # a bad value is reported before the study's imports (half a second, not one)
        check_sections(cfg)
        distributed.check_workers(cfg.study)  # torchrun's ranks or study.workers, not both
    except ConfigError as exc:
        print(f"error: {mask(str(exc))}", file=sys.stderr)
        sys.exit(2)
    configure_logging(log_level(cfg))
    try:  # first, before anything starts CUDA here: this worker's GPUs (or its workers')
        if _launches_workers(cfg):
            plan_workers(cfg.study)
        else:
            narrow_devices(cfg.study)
    except ConfigError as exc:
        print(f"error: {mask(str(exc))}", file=sys.stderr)
        sys.exit(2)
    # imported here, not above: `--help` and a config error need neither
    from harness.study import HELPER_ENV, FinalHelpers, help_final_stage, ranks, run_sweep

    replace_entries(cfg, HydraConfig.get().overrides.task)
    command = resume_command()
    _mask_multirun_file(config_urls(cfg))
    if os.environ.get(HELPER_ENV):  # started by a lone sweep's final stage (final.workers)
        with masked_output(config_urls(cfg)), raise_on_signals():
            try:
                help_final_stage(cfg)
            except ConfigError as exc:  # the sweep that started it has the same config
                print(f"error: {mask(str(exc))}", file=sys.stderr)
                sys.exit(2)
            except KeyboardInterrupt as exc:  # its running run recorded as interrupted
                sys.exit(int(getattr(exc, "exit_code", 130)))
        sys.exit(0)
    if _launches_workers(cfg):
        with masked_output(config_urls(cfg)):
            sys.exit(_run_workers(cfg, command))
    if not distributed.start().leader:  # torchrun's rank > 0: trains what rank 0 hands on
        with masked_output(config_urls(cfg)), raise_on_signals():
            sys.exit(_follow(cfg))
    with masked_output(config_urls(cfg)), raise_on_signals():
        try:
            with ranks.leading():  # under torchrun: the other ranks told when the study ends
                summary = run_sweep(
                    cfg, resume_command=command, final_helpers=FinalHelpers(command_args())
                )
        except ConfigError as exc:
            print(f"error: {mask(str(exc))}", file=sys.stderr)
            sys.exit(2)
        except StudyStopped as exc:
            print(exc.summary.format())
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt as exc:
            name = getattr(exc, "name", "Ctrl-C")
            print(
                f"\ninterrupted ({name}): the running trial is recorded as interrupted and "
                "will run again; finished trials are kept.\n"
                f"Resume with: {command}",
                file=sys.stderr,
            )
            sys.exit(getattr(exc, "exit_code", 130))
        print(summary.format())


def _follow(cfg: DictConfig) -> int:
    """A torchrun rank > 0 (:mod:`harness.study.ranks`): its exit status."""
    from harness.study import ranks

    try:
        return ranks.follow(cfg)
    except ConfigError as exc:  # rank 0 says it too
        print(f"error: {mask(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # rank 0 records the trial
        return int(getattr(exc, "exit_code", 130))


def _mask_multirun_file(urls: list[object]) -> None:
    """Hydra saves a multirun's whole config (URLs with their passwords) as multirun.yaml in
    hydra.sweep.dir: mask the passwords in it."""

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return
    register(urls)
    path = Path(hydra_cfg.sweep.dir) / "multirun.yaml"
    try:
        text = path.read_text()
        if mask(text) != text:
            path.write_text(mask(text))
    except OSError:
        pass


def _launches_workers(cfg: DictConfig) -> bool:
    try:
        return int(cfg.study.get("workers") or 1) > 1 and cfg.study.get("worker") is None
    except Exception:  # a malformed config: validation reports it
        return False


def _run_workers(cfg: DictConfig, command: str) -> int:
    """``study.workers`` > 1: check the config once, start the workers, print the summary."""
    from harness.data import load_labelled_data
    from harness.study import init_stores, run_workers, study_summary, validate_config

    try:
        validate_config(cfg)
        load_labelled_data(cfg.data)  # bad data refused before the stores are made
        init_stores(cfg)
    except ConfigError as exc:
        print(f"error: {mask(str(exc))}", file=sys.stderr)
        return 2
    code = run_workers(cfg, command_args())
    try:
        print(study_summary(cfg, command).format())
    except Exception as exc:  # e.g. every worker stopped on bad input before creating it
        print(f"no summary: {mask(str(exc))}", file=sys.stderr)
    if code in (129, 130, 143):  # SIGHUP / Ctrl-C / SIGTERM, passed on to the workers
        print(
            f"interrupted: the workers recorded their running trials as interrupted; "
            f"finished trials are kept.\nResume with: {mask(command)}",
            file=sys.stderr,
        )
    return code


def cli() -> None:
    """``python -m harness.sweep`` (Hydra's composition errors as one ``error:`` line)."""
    run_hydra(main)


if __name__ == "__main__":
    cli()
