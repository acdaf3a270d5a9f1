"""Entry point: ``python -m harness.sweep +sweep=NAME [key=value ...]`` (``--help`` for more).

Composes the config with Hydra, runs or resumes the study, prints its summary. Bad input, Hydra's
own composition errors included, ends with one line naming the field or file at fault and exit
status 2, with nothing created. Ctrl-C / SIGTERM stop within seconds (exit 130 / 143) and print
the command that resumes; a study stopped by its failure limit exits with 1.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

import harness  # noqa: F401  (registers the config resolvers)
from harness.errors import ConfigError, StudyStopped


def resume_command() -> str:
    """The command line that reruns (and so resumes) this study."""
    from hydra.core.hydra_config import HydraConfig

    overrides = list(HydraConfig.get().overrides.task)
    return " ".join(["python -m harness.sweep", *map(shlex.quote, overrides)])


# An absolute path: the same whether this runs as `python -m harness.sweep`, as the
# `harness-sweep` script or from another module (a relative one would be read as a package).
CONF = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONF, config_name="config")
def main(cfg: DictConfig) -> None:
    from harness.interrupts import raise_on_signals
    from harness.progress import configure_logging
    from harness.secrets import mask, masked_output

    configure_logging()
    from harness.study import run_sweep

    command = resume_command()
    _mask_multirun_file(_urls(cfg))
    if _launches_workers(cfg):
        with masked_output(_urls(cfg)):
            sys.exit(_run_workers(cfg, command))
    with masked_output(_urls(cfg)), raise_on_signals():
        try:
            summary = run_sweep(cfg, resume_command=command)
        except ConfigError as exc:
            print(f"error: {mask(str(exc))}", file=sys.stderr)
            sys.exit(2)
        except StudyStopped as exc:
            print(exc.summary.format())
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt as exc:
            name = getattr(exc, "name", "Ctrl-C")
            print(f"\ninterrupted ({name}): the running trial is recorded as interrupted and "
                  "will run again; finished trials are kept.\n"
                  f"Resume with: {command}", file=sys.stderr)
            sys.exit(getattr(exc, "exit_code", 130))
        print(summary.format())


def _mask_multirun_file(urls: list[Any]) -> None:
    """Hydra saves a multirun's whole config (URLs with their passwords) as multirun.yaml in
    hydra.sweep.dir: mask the passwords in it."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from harness.secrets import mask, register

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
    from hydra.core.hydra_config import HydraConfig

    from harness.prepare import validate_config
    from harness.secrets import mask
    from harness.study import init_stores, study_summary
    from harness.workers import run_workers

    try:
        validate_config(cfg)
        init_stores(cfg)
    except ConfigError as exc:
        print(f"error: {mask(str(exc))}", file=sys.stderr)
        return 2
    code = run_workers(cfg, list(HydraConfig.get().overrides.task))
    try:
        print(study_summary(cfg, command).format())
    except Exception as exc:  # e.g. every worker stopped on bad input before creating it
        print(f"no summary: {mask(str(exc))}", file=sys.stderr)
    if code in (130, 143):  # Ctrl-C / SIGTERM, passed on to the workers
        print(f"interrupted: the workers recorded their running trials as interrupted; "
              f"finished trials are kept.\nResume with: {mask(command)}", file=sys.stderr)
    return code


def _urls(cfg: DictConfig) -> list[Any]:
    """The storage and tracking URLs (their passwords are masked in all output)."""
    urls = []
    for key in ("study.storage", "tracking.uri"):
        try:
            node: Any = cfg
            for part in key.split("."):
                node = node.get(part)
            urls.append(node)
        except Exception:  # a malformed config: validation reports it
            continue
    return urls


def cli() -> None:
    """``python -m harness.sweep``: Hydra's own errors (unknown key, unparsable override,
    missing config, malformed YAML) become one ``error:`` line too.

    Hydra prints those as several lines plus a hint; with ``HYDRA_FULL_ERROR=1`` it raises them
    instead, so they are caught here. Set ``HYDRA_FULL_ERROR=1`` yourself for the traceback.
    """
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except Exception as exc:
        line = composition_error(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)


def composition_error(exc: BaseException) -> str | None:
    """One line for an error Hydra / OmegaConf / YAML raised while composing the config; None
    for anything else."""
    import yaml
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    chain, cause = [], exc
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for error in chain:
        if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
            mark = error.problem_mark
            context = f" ({error.context})" if error.context else ""
            return (f"{mark.name}: line {mark.line + 1}, column {mark.column + 1}: "
                    f"{error.problem}{context}")
    if not isinstance(exc, HydraException | OmegaConfBaseException):
        return None
    text = str(exc).strip()
    if isinstance(exc, OverrideParseException):
        return f"cannot parse the override {exc.override!r}: {text.splitlines()[0]}"
    if isinstance(exc, MissingConfigException):
        found = re.search(r"Could not find '([^']+)'", text)
        missing = found.group(1) if found else (exc.missing_cfg_file or "config")
        group, _, name = missing.rpartition("/")
        options = f" (available: {', '.join(exc.options)})" if exc.options else ""
        return f"{group or 'config'}: no config named '{name}'{options}"
    found = re.search(r"Could not (?:override|append to|delete from) '([^']+)'", text)
    if found:
        key = found.group(1).lstrip("+~")
        hint = text.splitlines()[1].strip() if len(text.splitlines()) > 1 else ""
        cause = exc.__cause__
        reason = str(cause).splitlines()[0] if cause else text.splitlines()[0]
        if "not in struct" in reason:
            reason = "no such setting"
        return f"{key}: {reason}" + (f" ({hint[0].lower() + hint[1:]})" if hint else "")
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


if __name__ == "__main__":
    cli()
