"""A study from start to end: validate → prepare once → recover → run (or resume) → summary.

The study lives in Optuna's storage; MLflow is a view of it. A run can stop at any moment and the
same command resumes: finished trials are kept, trials a stopped process left behind are failed,
closed and retried (:mod:`harness.recovery`), and the study reaches ``study.n_trials`` finished
(complete + pruned) trials, failed ones not counting.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from harness import trials
from harness.errors import ConfigError, StudyStopped, first_line, instantiate
from harness.prepare import prepare, validate_config
from harness.secrets import mask
from harness.summary import SweepSummary, build_summary, record_best

log = logging.getLogger(__name__)

# Config sections that define what a study's trials mean. Resuming a study with different
# values would mix incomparable trials, so it is refused. (n_trials, timeout, sampler, pruner,
# tracking, checkpoints and display may change between runs.)
FINGERPRINT_KEYS = ("model", "data", "peft", "train", "search_space", "method_space", "methods",
                    "metrics", "metric_args")
FINGERPRINT_STUDY_KEYS = ("metric", "direction", "second_objective")
FINGERPRINT_ATTR = "harness.fingerprint"
PARENT_RUN_ATTR = "mlflow_parent_run_id"


def run_sweep(cfg: DictConfig, resume_command: str = "") -> SweepSummary:
    """Run (or resume) the study described by a composed config and return its summary.

    Raises :class:`ConfigError` on bad input (nothing created), :class:`StudyStopped` when the
    failure limit stopped the study, ``KeyboardInterrupt`` when interrupted (the running trial
    recorded as interrupted and queued again).
    """
    import optuna

    from harness.checkpoint_store import CheckpointStore
    from harness.failure_limit import FailureLimit
    from harness.objective import Objective, fixed_params
    from harness.progress import StudyProgress
    from harness.recovery import Recovery
    from harness.tracking import Tracker
    from harness.workers import threads_per_worker

    space = validate_config(cfg)
    threads = threads_per_worker(cfg.study)
    if threads:
        import torch

        torch.set_num_threads(threads)
    prepared = prepare(cfg, space)
    study_cfg = cfg.study
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.get("artifact_location"), study_cfg.name)
    tracker.check()
    store = CheckpointStore(study_cfg.output_dir, cfg.checkpoints.keep)
    recovery = Recovery(tracker, store, study_cfg.max_retries, study_cfg.grace_period)
    storage = _storage(study_cfg, recovery)
    fingerprint = _fingerprint(cfg)
    existing = _existing_study(storage, study_cfg.name, fingerprint)

    n_before = len(existing.trials) if existing else 0
    sampler_seed = cfg.sampler.get("seed")
    worker = study_cfg.get("worker")
    sampler_kwargs = {}
    if sampler_seed is not None:  # never replay the samples of earlier runs (or other workers)
        sampler_kwargs["seed"] = int(sampler_seed) + n_before + 7919 * int(worker or 0)
    study = optuna.create_study(
        study_name=study_cfg.name,
        storage=storage,
        sampler=instantiate("sampler", cfg.sampler, **sampler_kwargs),
        pruner=instantiate("pruner", cfg.pruner),
        directions=[study_cfg.direction] + (["minimize"] if _multi(cfg) else []),
        load_if_exists=True,
    )
    if FINGERPRINT_ATTR not in study.user_attrs:  # new (or created by a process killed at once)
        study.set_user_attr(FINGERPRINT_ATTR, fingerprint)
    parent = tracker.open_study(study.user_attrs.get(PARENT_RUN_ATTR),
                                _study_params(prepared, fixed_params(prepared)))
    study.set_user_attr(PARENT_RUN_ATTR, parent)
    recovery.recover(study)
    finished = trials.count(study)["finished"]
    if worker is not None:
        log.info("worker %d on study '%s': %d trials finished, %d to go", worker, study_cfg.name,
                 finished, max(0, study_cfg.n_trials - finished))
    elif existing is not None:
        log.info("resuming study '%s': %d trials finished, %d to go", study_cfg.name, finished,
                 max(0, study_cfg.n_trials - finished))

    progress = StudyProgress(study_cfg.n_trials, finished, study_cfg.metric,
                             enabled=bool(cfg.display.progress))
    objective = Objective(prepared, tracker, store, progress)
    limit = FailureLimit(**OmegaConf.to_container(study_cfg.failure_limit))
    status = "FINISHED"
    try:
        _run_trials(study, objective, study_cfg, limit, recovery)
    except KeyboardInterrupt as exc:
        status = "KILLED"
        reason = f"interrupted by {getattr(exc, 'name', 'KeyboardInterrupt')}"
        recovery.interrupted(study, objective.current, reason)
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        progress.close()
        record_best(study, tracker)
        if not trials.count(study)["running"]:  # other workers still at it: the last one closes
            tracker.close_study("FAILED" if limit.reason and status == "FINISHED" else status)
    summary = build_summary(study, cfg, tracker, store, objective.overheads, resume_command)
    summary.report = report_text(study, cfg, tracker)
    if limit.reason:
        raise StudyStopped(limit.reason, summary)
    return summary


def report_text(study: Any, cfg: DictConfig, tracker: Any) -> str:
    """Write the study report (``report.enabled``) and return it for the terminal; a report
    that cannot be written is a warning, never a failed sweep."""
    if not cfg.get("report") or not cfg.report.enabled:
        return ""
    from harness.report import write_report

    try:
        return write_report(study, cfg, tracker).format()
    except Exception as exc:
        log.warning("could not write the study report: %s", mask(first_line(exc)))
        return ""


def study_summary(cfg: DictConfig, resume_command: str = "") -> SweepSummary:
    """The summary of the study a config names, read from its storage and MLflow (used after
    ``study.workers`` processes have run it)."""
    import optuna

    from harness.checkpoint_store import CheckpointStore
    from harness.tracking import Tracker

    study = optuna.load_study(study_name=cfg.study.name, storage=str(cfg.study.storage))
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.get("artifact_location"), cfg.study.name)
    store = CheckpointStore(cfg.study.output_dir, cfg.checkpoints.keep)
    overheads = [t.user_attrs["overhead_s"] for t in study.get_trials(deepcopy=False)
                 if "overhead_s" in t.user_attrs]
    summary = build_summary(study, cfg, tracker, store, overheads, resume_command)
    tracker.parent_run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    summary.report = report_text(study, cfg, tracker)
    return summary


def _run_trials(study: Any, objective: Any, study_cfg: DictConfig, limit: Any,
                recovery: Any) -> None:
    """Trials one after the other until the study has ``n_trials`` finished ones (failed ones
    do not count), the failure limit trips or ``timeout`` passes.

    Other workers may share the study: a trial starts only while finished + running trials are
    short of ``n_trials`` (so W workers overshoot by at most W - 1, when they check at the same
    moment). When the last trials are running elsewhere, this worker waits for them instead of
    leaving: if one of them dies, its retry is queued and this worker runs it.
    """
    from harness import interrupts

    deadline = None if study_cfg.timeout is None else time.monotonic() + study_cfg.timeout
    while limit.reason is None and (deadline is None or time.monotonic() < deadline):
        interrupts.check()
        counts = trials.count(study)
        if counts["finished"] >= study_cfg.n_trials:
            return
        if counts["finished"] + counts["running"] >= study_cfg.n_trials and not counts["waiting"]:
            time.sleep(min(5.0, float(study_cfg.heartbeat_interval)))
            recovery.check_stale(study)
            continue
        study.optimize(
            objective, n_trials=1,
            catch=(Exception,),  # a failed trial is recorded; the study goes on
            callbacks=[limit, objective.after_trial], gc_after_trial=True,
        )


# ----------------------------------------------------------------------------- helpers


def _storage(study_cfg: DictConfig, recovery: Any) -> Any:
    """Optuna's storage for ``study.storage``, with a heartbeat per running trial (a trial whose
    heartbeat stops is failed and retried by ``recovery``)."""
    import optuna

    url = str(study_cfg.storage)
    if url.startswith("sqlite:///"):
        folder = Path(url.removeprefix("sqlite:///")).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError("study.storage", mask(f"cannot create the folder of '{url}': "
                                                    f"{exc.strerror or exc}")) from None
    for attempt in (1, 2):  # two workers creating the tables at once: the second retries
        try:
            with warnings.catch_warnings():  # the heartbeat is "experimental" since Optuna 2.8
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=int(study_cfg.heartbeat_interval),
                    grace_period=int(study_cfg.grace_period),
                    heartbeat_stale_trial_callback=recovery,
                    engine_kwargs=_engine_kwargs(url),
                )
        except Exception as exc:
            if attempt == 2 or isinstance(exc, ImportError):
                raise ConfigError("study.storage",
                                  mask(f"cannot open '{url}': {first_line(exc)}")) from None
            time.sleep(1.0)
    raise AssertionError("unreachable")


def init_stores(cfg: DictConfig) -> None:
    """Create the storage's and the tracking store's tables (before several workers start, so
    that they do not race to create them)."""
    from harness.tracking import Tracker

    Tracker(cfg.tracking.uri, cfg.tracking.get("artifact_location"), cfg.study.name).check()
    _storage(cfg.study, None).remove_session()


def _engine_kwargs(url: str) -> dict[str, Any]:
    """SQLite: wait for a lock (the heartbeat thread and other workers write too)."""
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}


def _fingerprint(cfg: DictConfig) -> dict[str, str]:
    """The unresolved settings that define the study (the same on every machine)."""
    out = {}
    for key in FINGERPRINT_KEYS:
        node = cfg.get(key)
        container = OmegaConf.to_container(node, resolve=False) if node is not None else None
        out[key] = json.dumps(container, sort_keys=True)
    for key in FINGERPRINT_STUDY_KEYS:
        out[f"study.{key}"] = json.dumps(cfg.study.get(key))
    return out


def _existing_study(storage: Any, name: str, fingerprint: dict[str, str]) -> Any:
    import optuna

    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return None
    study = optuna.load_study(study_name=name, storage=storage)
    stored = study.user_attrs.get(FINGERPRINT_ATTR)
    if stored:
        changed = _diff(stored, fingerprint)
        if changed:
            raise ConfigError(
                "study.name",
                f"study '{name}' exists with other settings ({'; '.join(changed[:4])}): resume "
                "it with its own settings, or start a new study with study.name=NEW_NAME",
            )
    return study


def _diff(stored: dict[str, str], current: dict[str, str]) -> list[str]:
    def flat(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
        if isinstance(value, dict):
            for k, v in value.items():
                flat(f"{prefix}.{k}", v, out)
        else:
            out[prefix] = value
        return out

    old, new = {}, {}
    for key in set(stored) | set(current):
        flat(key, json.loads(stored.get(key, "null")), old)
        flat(key, json.loads(current.get(key, "null")), new)
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]


def _multi(cfg: DictConfig) -> bool:
    return cfg.study.get("second_objective") is not None


def _study_params(prepared: Any, fixed: dict[str, Any]) -> dict[str, Any]:
    cfg = prepared.cfg
    space = {key: OmegaConf.to_container(cfg[key], resolve=True)
             for key in ("search_space", "method_space") if cfg.get(key)}
    return {
        **fixed,
        "study.metric": cfg.study.metric,
        "study.direction": cfg.study.direction,
        "sampler": cfg.sampler._target_,
        "sampler.seed": cfg.sampler.get("seed"),
        "pruner": cfg.pruner._target_,
        "checkpoints.keep": cfg.checkpoints.keep,
        **{key: json.dumps(value) for key, value in space.items()},
        **{f"data.{k}_size": len(v) for k, v in prepared.datasets.items()},
    }
