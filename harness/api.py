"""The Python API: run or resume a study from plain Python (a notebook, a script) and get its
result back, as ``Trainer.hyperparameter_search`` users do::

    import harness

    result = harness.run("lora", overrides=["study.n_trials=20"])
    result.best_trial, result.best_params, result.best_checkpoint

:func:`run` composes the config exactly as ``python -m harness.sweep +sweep=NAME OVERRIDES``
does (search-space entries given with a ``type`` replaced, the typed checks, ``--config-dir``),
runs or resumes the study in this process and returns a :class:`SweepResult`. Bad input raises
:class:`~harness.base.errors.ConfigError` whose text is the line the command line prints after
``error:``; nothing calls ``sys.exit``, no signal handler is installed (Ctrl-C is Python's
``KeyboardInterrupt``: the running trial is recorded as interrupted and the next call resumes),
and the process is left as it was found (Hydra's global state, the ``harness`` logger, the
libraries' log levels, warning filters, environment variables): it can be called again.

``import harness`` does not import this module: ``harness.run`` loads it on first use (it
imports the study, Optuna and MLflow; the command line's ``--help`` stays fast).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.version import VersionBase
from omegaconf import DictConfig

from harness.base import distributed
from harness.base.devices import narrow_devices
from harness.base.errors import ConfigError
from harness.base.progress import configure_logging, log_level
from harness.base.secrets import config_urls, mask, masked_output, register
from harness.base.storages import load_study
from harness.config import check_sections
from harness.config.command import CONF, composition_error
from harness.config.space_overrides import prepare, replace_entries
from harness.records import final as final_record
from harness.records import schema
from harness.study import run_sweep
from harness.study.retention import StudyCheckpoints

if TYPE_CHECKING:
    from harness.study.objective import FineTune
    from harness.study.summary import SweepSummary

__all__ = ["FinalChoice", "SweepResult", "compose", "resume_command", "run"]


@dataclass(frozen=True)
class FinalChoice:
    """The final stage's choice (``final`` in conf/config.yaml): the configuration (a search
    trial) whose fresh seeds scored the best mean on validation, and what the study ships."""

    trial: int  # the chosen configuration's search trial
    seed: int  # its best seed: the study's `best` checkpoint when it ships one model
    validation: float  # the study metric on validation, mean over the seeds
    validation_sd: float  # … and its standard deviation
    test: float | None  # the test split's mean over the seeds (None: no test split scored)
    test_sd: float | None
    shipped: str  # what the study ships: "seed", "soup" or "ensemble" (final.combine)
    shipped_validation: float  # the shipped model's validation value
    shipped_test: float | None  # … and its test value (None: not scored)


@dataclass(frozen=True)
class SweepResult:
    """What :func:`run` returns: the study as its storage holds it after the run."""

    study_name: str
    storage: str  # the Optuna storage URL (as given: passwords included)
    best_trial: int | None  # the best trial's number (None: no trial completed)
    best_value: float | None  # its validation value of study.metric
    best_params: Mapping[str, Any]  # its params, named as the trials record them
    final: FinalChoice | None  # None: the final stage did not run (final.seeds=0, skipped)
    best_checkpoint: Path | None  # the study's `best` checkpoint folder, absolute (None: none)
    parent_run_id: str | None  # the study's MLflow parent run
    tracking_uri: str  # the MLflow tracking store
    experiment: str  # the MLflow experiment (the study's name)
    complete: int  # trials of this study by state
    pruned: int
    failed: int
    summary: str  # the summary the command line prints (passwords masked)

    def __str__(self) -> str:
        return self.summary


def run(
    sweep: str,
    overrides: Sequence[str] = (),
    config_dir: str | Path | None = None,
    *,
    finetune: FineTune | None = None,
) -> SweepResult:
    """Run (or resume: the same sweep and overrides name the same study) the study that
    ``python -m harness.sweep [--config-dir=CONFIG_DIR] +sweep=SWEEP OVERRIDES`` would run.

    ``overrides``: the command line's ``key=value`` arguments, as strings
    (``"study.n_trials=20"``, ``"search_space={train.learning_rate: {high: 1e-2}}"``).
    ``config_dir``: a folder of the user's own configs (``sweep/NAME.yaml`` …), searched as
    ``--config-dir`` is: after the shipped ones (it adds options; a shipped one of the same name
    wins). ``finetune``: a testing hook, what trains each trial (None: the real fine-tune; the
    tests pass the scripted fake of tests/helpers/fake_finetune.py).

    Raises :class:`ConfigError` on bad input (its text the command line's ``error:`` line,
    nothing created), :class:`~harness.base.errors.StudyStopped` when the failure limit stopped
    the study (``.summary``), ``KeyboardInterrupt`` when interrupted (the next call resumes).
    ``study.workers`` > 1 is the command line's: this runs the study in this process.
    """
    if isinstance(overrides, str):  # run("lora", "study.n_trials=3"): one override, not letters
        raise TypeError("overrides: a sequence of 'key=value' strings, not one string")
    overrides = list(overrides)
    cfg = compose(sweep, overrides, config_dir)
    if int(cfg.study.workers) > 1 and cfg.study.get("worker") is None:
        raise ConfigError(
            "study.workers",
            "the Python API runs the study in this process: start several workers with the "
            "command line (python -m harness.sweep … study.workers=N) or call harness.run in "
            "each process with study.worker=I",
        )
    if distributed.launched():
        raise ConfigError(
            "study.gpus_per_worker",
            "one trial across torchrun's ranks runs from the command line (torchrun "
            "--nproc_per_node=K -m harness.sweep …): harness.run runs the study in this process",
        )
    command = resume_command(sweep, overrides, config_dir)
    with _process_kept(cfg), masked_output(config_urls(cfg)):
        try:
            narrow_devices(cfg.study)  # this process's GPUs (a warning once CUDA has started)
            summary = run_sweep(cfg, resume_command=command, finetune=finetune)
        except ConfigError as exc:
            masked = _masked(exc)
            if masked is exc:
                raise
            raise masked from None
    return _result(cfg, summary)


def compose(
    sweep: str, overrides: Sequence[str] = (), config_dir: str | Path | None = None
) -> DictConfig:
    """The config ``python -m harness.sweep [--config-dir=CONFIG_DIR] +sweep=SWEEP OVERRIDES``
    runs with, checked (:func:`harness.config.check_sections`); a :class:`ConfigError` with the
    command line's ``error:`` text when it does not compose or a value is refused."""
    args = [f"+sweep={sweep}", *overrides]
    register(args)  # passwords typed in an override, even under a mistyped key
    prepared = prepare(args)  # search-space entries replaced, not refused
    hydra_args = list(prepared)
    if config_dir is not None:
        folder = Path(os.path.abspath(Path(config_dir).expanduser()))
        if not folder.is_dir():  # Hydra's own words for --config-dir
            raise _error(f"Additional config directory '{folder}' not found", "config_dir")
        # --config-dir, as Hydra's command line adds it: searched after the shipped configs
        hydra_args.append(f"hydra.searchpath=[{_quoted(f'file://{folder}')}]")
    with _own_hydra():
        try:
            with initialize_config_dir(config_dir=CONF, version_base="1.3"):
                cfg = hydra_compose(config_name="config", overrides=hydra_args)
        except Exception as exc:
            line = composition_error(exc)
            if line is None:  # not bad input: a bug, with its traceback
                raise
            raise _error(line, "overrides") from None
    try:
        check_sections(cfg)
    except ConfigError as exc:
        raise _masked(exc) from None
    replace_entries(cfg, prepared)
    return cfg


def resume_command(
    sweep: str, overrides: Sequence[str] = (), config_dir: str | Path | None = None
) -> str:
    """The command line that resumes the study :func:`run` runs with these arguments (the
    summary's "Resume or extend" line; ``harness.run`` with the same arguments does the same)."""
    args = [f"+sweep={sweep}", *overrides]
    if config_dir is not None:
        args.insert(0, f"--config-dir={os.path.abspath(Path(config_dir).expanduser())}")
    return " ".join(["python -m harness.sweep", *map(shlex.quote, args)])


def _result(cfg: DictConfig, summary: SweepSummary) -> SweepResult:
    """The result of a run: the summary's figures, and from the storage what it does not hold
    as data (the final stage's record, the parent run)."""
    study = load_study(str(cfg.study.storage), summary.study_name)
    best = StudyCheckpoints.from_config(cfg).best_path() if summary.best_checkpoint else None
    best = best.absolute() if best is not None else None  # study.output_dir: from the cwd
    parent = study.user_attrs.get(schema.PARENT_RUN_ATTR)
    return SweepResult(
        study_name=summary.study_name,
        storage=summary.storage,
        best_trial=summary.best_number,
        best_value=summary.best_value,
        best_params=dict(summary.best_params),
        final=_final_choice(final_record.record(study)),
        best_checkpoint=best,
        parent_run_id=str(parent) if parent else None,
        tracking_uri=summary.tracking_uri,
        experiment=summary.experiment,
        complete=summary.complete,
        pruned=summary.pruned,
        failed=summary.failed,
        summary=mask(summary.format()),
    )


def _final_choice(record: final_record.FinalRecord | None) -> FinalChoice | None:
    if not record or record.get("skipped"):
        return None
    chosen = record["configs"][str(record["trial"])]
    test = record.get("test") or {}
    scored = bool(test.get("values"))
    shipped = final_record.shipped(record)
    return FinalChoice(
        trial=int(record["trial"]),
        seed=int(record["seed"]),
        validation=float(chosen["mean"]),
        validation_sd=float(chosen["sd"]),
        test=float(test["mean"]) if scored else None,
        test_sd=float(test["sd"]) if scored else None,
        shipped=shipped["kind"],
        shipped_validation=float(shipped["val"]),
        shipped_test=None if shipped["test"] is None else float(shipped["test"]),
    )


def _error(line: str, field: str) -> ConfigError:
    """A ConfigError whose text is ``line`` (masked), as the command line prints it after
    ``error:``; its field the line's own ("study.n_trials: …"), else ``field``."""
    line = mask(line)
    head, sep, message = line.partition(": ")
    if sep and head and " " not in head:
        return ConfigError(head, message)
    error = ConfigError(field, line)
    error.args = (line,)  # str(): the line alone, as printed
    return error


def _masked(exc: ConfigError) -> ConfigError:
    """``exc`` with every password masked (itself when it holds none)."""
    if mask(str(exc)) == str(exc):
        return exc
    return ConfigError(exc.field, mask(exc.message))


def _quoted(text: str) -> str:
    """A quoted string of Hydra's override grammar (a path with spaces, commas, brackets)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@contextlib.contextmanager
def _own_hydra() -> Iterator[None]:
    """Hydra's global state for one composition, then as it was: the caller's own initialized
    Hydra (a notebook that composes its own configs) set aside and put back, the version base
    restored; ``initialize_config_dir`` clears its own on the way out."""
    outer = GlobalHydra.instance().hydra
    base = VersionBase.instance().getbase()
    GlobalHydra.instance().clear()
    try:
        yield
    finally:
        GlobalHydra.instance().clear()
        if outer is not None:
            GlobalHydra.instance().initialize(outer)
        VersionBase.instance().version_base = base


@contextlib.contextmanager
def _process_kept(cfg: DictConfig) -> Iterator[None]:
    """The run's output as the command line's (``configure_logging``: harness lines on stderr,
    the libraries quiet), and the caller's process as it was afterwards: log handlers and
    levels, Optuna's verbosity, warning filters, environment variables, torch's threads."""
    harness_log = logging.getLogger("harness")
    handlers, propagate = list(harness_log.handlers), harness_log.propagate
    levels = _logger_levels()
    verbosity = optuna.logging.get_verbosity()
    environment = dict(os.environ)
    made: set[str] = set()
    threads = None
    if cfg.study.get("threads"):  # the only setting that changes torch's thread count
        import torch

        threads = torch.get_num_threads()
    try:
        with warnings.catch_warnings():
            configure_logging(log_level(cfg))
            made = set(_logger_levels()) - set(levels)  # loggers it set that did not exist
            yield
    finally:
        for handler in harness_log.handlers:
            if handler not in handlers:
                handler.close()
        harness_log.handlers[:] = handlers
        harness_log.propagate = propagate
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for name in made:
            logging.getLogger(name).setLevel(logging.NOTSET)
        optuna.logging.set_verbosity(verbosity)
        for key in set(os.environ) - set(environment):
            del os.environ[key]
        os.environ.update(environment)
        if threads is not None:
            import torch

            torch.set_num_threads(threads)


def _logger_levels() -> dict[str, int]:
    """The level of every logger that exists (placeholders for loggers not made yet left out)."""
    loggers = logging.Logger.manager.loggerDict
    return {name: lg.level for name, lg in loggers.items() if isinstance(lg, logging.Logger)}
