"""A study from start to end, read top to bottom: setup → search → close → summary.

The study lives in Optuna's storage; MLflow is a view of it. A run can stop at any moment and the
same command resumes: finished trials are kept, trials a stopped process left behind are failed,
closed and retried (:mod:`harness.study.recovery`), and the study reaches ``study.n_trials``
finished (complete + pruned) trials, failed ones not counting.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

import optuna
from omegaconf import DictConfig

from harness.base import interrupts
from harness.base.errors import StudyStopped, first_line
from harness.base.objects import build
from harness.base.progress import StudyProgress
from harness.base.secrets import mask
from harness.base.storages import load_study
from harness.base.study_log import StudyLog
from harness.records import schema, trials
from harness.records.lookup import build_tracker
from harness.records.provenance import command_line, describe
from harness.report import write_report
from harness.study import enqueued, output_dir
from harness.study.failure_limit import FailureLimit
from harness.study.final import FinalInputs, FinalStage, check_resumed, final_store
from harness.study.inputs import check_inputs, input_identity
from harness.study.objective import FineTune, Objective
from harness.study.paused import PausedStates
from harness.study.promotion import PromotionPruner, queue_promotions
from harness.study.recovery import Recovery
from harness.study.retention import StudyCheckpoints, drop_mlflow_checkpoints
from harness.study.seeds import claim_slot, sampler_seed
from harness.study.setup import prepare_study, validate_config
from harness.study.storage import existing_study, fingerprint, identity, open_storage
from harness.study.summary import SweepSummary, build_summary, record_best
from harness.study.workers import threads_per_worker
from harness.train.memory import study_objects_frozen

if TYPE_CHECKING:
    from harness.records.tracker import Tracker
    from harness.space import MethodSpace, SearchSpace
    from harness.study.setup import Prepared
    from harness.study.workers import FinalHelpers

log = logging.getLogger(__name__)


def run_sweep(
    cfg: DictConfig,
    resume_command: str = "",
    finetune: FineTune | None = None,
    final_helpers: FinalHelpers | None = None,
) -> SweepSummary:
    """Run (or resume) the study described by a composed config and return its summary.
    ``finetune``: what trains each trial (None: the real fine-tune; the tests' fast tier
    passes a scripted fake). ``final_helpers``: what starts ``final.workers`` helper processes
    for the final stage (the command line's; None: this process trains every final run).

    Raises :class:`ConfigError` on bad input (nothing created), :class:`StudyStopped` when the
    failure limit stopped the study, ``KeyboardInterrupt`` when interrupted (the running trial
    recorded as interrupted and queued again).
    """
    sweep = Sweep(cfg, finetune)
    sweep.setup()
    status = "FINISHED"
    final: FinalStage | None = None
    try:
        with study_objects_frozen():
            sweep.search()
            if sweep.limit.reason is None:  # the failure limit stops the study: no final stage
                final = FinalStage(sweep.final_inputs(final_helpers))
                final.run()
    except KeyboardInterrupt as exc:
        status = "KILLED"
        sweep.interrupted(
            f"interrupted by {getattr(exc, 'name', 'KeyboardInterrupt')}",
            final.running if final is not None else None,
        )
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        sweep.close(status)
    return sweep.summary(resume_command)


def help_final_stage(cfg: DictConfig) -> None:
    """A ``final.workers`` helper (:class:`harness.study.workers.FinalHelpers`): the study
    opened as a worker's, then its queued final runs trained until none is left. No search, no
    choice, no summary, and the parent run left open: the process that started it does those.

    Raises ``KeyboardInterrupt`` when stopped (its running run recorded as interrupted)."""
    sweep = Sweep(cfg)
    sweep.setup()
    final = FinalStage(sweep.final_inputs(), helper=True)
    try:
        with study_objects_frozen():
            final.run()
    except KeyboardInterrupt as exc:
        sweep.interrupted(
            f"interrupted by {getattr(exc, 'name', 'KeyboardInterrupt')}", final.running
        )
        raise
    finally:
        sweep.progress.close()
        if sweep.log is not None:
            sweep.log.close()


class Sweep:
    """One worker's run of a study."""

    # set by setup()
    prepared: Prepared
    tracker: Tracker
    store: StudyCheckpoints
    paused: PausedStates
    recovery: Recovery
    study: optuna.Study
    seed: int | None
    log: StudyLog | None
    progress: StudyProgress
    objective: Objective
    limit: FailureLimit

    def __init__(self, cfg: DictConfig, finetune: FineTune | None = None) -> None:
        self.cfg = cfg
        self.finetune = finetune  # None: the real fine-tune

    def setup(self) -> None:
        """Check the config, prepare what every trial shares (nothing created until both
        passed), open the storage and the tracking store, recover what a stopped run left."""

        cfg, study_cfg = self.cfg, self.cfg.study
        space = validate_config(cfg)
        threads = threads_per_worker(study_cfg)
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.prepared = prepare_study(cfg, space)  # in seconds
        # the stores once the input passed (validate_config checked the tracking store without
        # creating it): bad data or a storage that cannot be opened leave no MLflow store
        storage = open_storage(study_cfg, lambda study, trial: self.recovery(study, trial))
        self.tracker = build_tracker(cfg)
        self.tracker.check()
        self.store = StudyCheckpoints.from_config(cfg)
        self.paused = paused_states(cfg)
        self.recovery = Recovery(
            self.tracker,
            self.store,
            study_cfg.max_retries,
            study_cfg.grace_period,
            final_store(cfg),
            self.paused,
        )
        settings = fingerprint(cfg)
        existing = existing_study(storage, study_cfg.name, settings)
        enqueued.check_recipe(existing, enqueued.recipe(cfg, space))
        check_resumed(existing, cfg)  # final.seeds / final.vary as its final stage chose
        self.study = study = optuna.create_study(
            study_name=study_cfg.name,
            storage=storage,
            # seeded below, once this process has a slot
            sampler=cast("optuna.samplers.BaseSampler", build("sampler", cfg.sampler)),
            pruner=cast("optuna.pruners.BasePruner", build("pruner", cfg.pruner)),
            directions=[study_cfg.direction] + (["minimize"] if study_cfg.second_objective else []),
            load_if_exists=True,
        )
        if schema.FINGERPRINT_ATTR not in study.user_attrs:  # new (or made by a killed process)
            study.set_user_attr(schema.FINGERPRINT_ATTR, settings)
        inputs = input_identity(cfg, self.prepared)
        check_inputs(study, inputs)  # the data's content too
        self.tracker.provenance = describe(inputs, cfg.data)  # on every run created below
        self.seed = self._sampler_seed(existing)
        if self.seed is not None:
            study.sampler = cast(
                "optuna.samplers.BaseSampler", build("sampler", cfg.sampler, seed=self.seed)
            )
        ident = identity(study)  # the folder is bound to it, as the parent run is
        output_dir.claim(
            str(study_cfg.output_dir),
            study_cfg.name,
            ident[schema.STUDY_UID_TAG],
            str(study_cfg.storage),
        )
        self.log = open_log(cfg)
        try:
            self._open_run(study, ident, existing is not None, space)
        except BaseException:  # the log (its file, its handler) lives and dies with this run
            if self.log is not None:
                self.log.close()
            raise

    def _open_run(
        self,
        study: optuna.Study,
        ident: dict[str, str],
        resumed: bool,
        space: SearchSpace | MethodSpace,
    ) -> None:
        """The parent run opened (or resumed), stopped trials recovered, queued trials
        enqueued, the display, the objective and the failure limit made."""
        cfg, study_cfg = self.cfg, self.cfg.study
        parent = self.tracker.open_study(
            study.user_attrs.get(schema.PARENT_RUN_ATTR), self.prepared.study_params(), ident
        )
        study.set_user_attr(schema.PARENT_RUN_ATTR, parent)
        self.recovery.recover(study)
        enqueued.enqueue(study, cfg, enqueued.planned(cfg, space))  # once, resumes included
        finished = trials.count(study)["finished"]
        if study_cfg.worker is not None or resumed:
            who = f"worker {study_cfg.worker} on" if study_cfg.worker is not None else "resuming"
            log.info(
                "%s study '%s': %d trials finished, %d to go",
                who,
                study_cfg.name,
                finished,
                max(0, study_cfg.n_trials - finished),
            )
        self.progress = StudyProgress(
            study_cfg.n_trials,
            finished,
            study_cfg.metric,
            enabled=bool(cfg.display.progress),
            log=self.log,
        )
        self.objective = Objective(
            self.prepared, self.tracker, self.store, self.progress, self.paused, self.finetune
        )
        self.objective.sampler_seed = self.seed
        if cfg.checkpoints.mlflow == "kept":  # keep lowered, or a kill in between
            drop_mlflow_checkpoints(study, self.tracker, self.store)
        limit = study_cfg.failure_limit
        self.limit = FailureLimit(limit.consecutive, limit.rate, limit.min_trials)

    def search(self) -> None:
        """Trials one after the other until the study has ``n_trials`` finished ones (failed
        ones do not count), the failure limit trips or ``timeout`` passes.

        Other workers may share the study: a trial starts only while finished + running trials
        are short of ``n_trials`` (so W workers overshoot by at most W - 1, when they check at
        the same moment). When the last trials are running elsewhere, this worker waits for them
        instead of leaving: if one of them dies, its retry is queued and this worker runs it.
        (Optuna's MaxTrialsCallback counts finished trials only and never waits for others.)

        Under the promotion scheduler a worker takes a due promotion before a new configuration,
        and the study ends only once nothing runs, nothing is due and ``min_complete``
        configurations have reached the full budget (:mod:`harness.study.promotion`).
        """
        study_cfg, study = self.cfg.study, self.study
        pruner = study.pruner
        promotion = (
            pruner
            if isinstance(pruner, PromotionPruner) and not study_cfg.second_objective
            else None
        )
        deadline = None if study_cfg.timeout is None else time.monotonic() + study_cfg.timeout
        while self.limit.reason is None and (deadline is None or time.monotonic() < deadline):
            interrupts.check()
            counts = trials.count(study)
            done = counts["finished"] >= study_cfg.n_trials
            if promotion is not None and queue_promotions(
                study,
                promotion,
                self.paused,
                study_cfg.max_retries,
                at_end=done and not counts["running"] and not counts["continuing"],
            ):
                counts = trials.count(study)
            if promotion is not None and counts["continuing"]:
                if any(
                    trials.is_continuation(t)
                    for t in study.get_trials(
                        deepcopy=False, states=(optuna.trial.TrialState.WAITING,)
                    )
                ):
                    self._optimize()  # the oldest queued trial: a promotion, or a queued one
                    continue
                if done:  # running elsewhere: it may pause and make others due
                    self._wait()
                    continue
            if done:
                return
            if (
                counts["finished"] + counts["running"] >= study_cfg.n_trials
                and not counts["waiting"]
            ):
                self._wait()
                continue
            self._optimize()

    def _wait(self) -> None:
        """The last trials run elsewhere: wait for them (or recover them when they died)."""
        time.sleep(min(5.0, float(self.cfg.study.heartbeat_interval)))
        self.recovery.check_stale(self.study)

    def _optimize(self) -> None:
        """One trial: the oldest queued one, or a new configuration from the sampler."""
        try:
            self.study.optimize(
                self.objective,
                n_trials=1,
                catch=(Exception,),  # a failed trial is recorded; the study goes on
                callbacks=[self.limit, self.objective.after_trial],
                gc_after_trial=True,
            )
        except ValueError:  # "Cannot tell a FAIL trial": another worker took it over
            if self.objective.taken_over is None:
                raise
            self.objective.taken_over = None

    def final_inputs(self, helpers: FinalHelpers | None = None) -> FinalInputs:
        """What the final stage takes from the search."""
        return FinalInputs(
            self.cfg,
            self.study,
            self.prepared,
            self.tracker,
            self.store,
            self.recovery,
            self.progress,
            self.objective.finetune,
            helpers,
        )

    def interrupted(
        self, reason: str, final_runs: tuple[optuna.Study, Objective] | None = None
    ) -> None:
        """After Ctrl-C / SIGTERM: this process's running trials (or the final-stage runs,
        ``final_runs``: the companion study and its objective) recorded as interrupted."""
        study, objective = final_runs or (self.study, self.objective)
        self.recovery.interrupted(study, objective.current, reason)

    def close(self, status: str) -> None:
        """The parent run's final record; closed by the last worker still running trials."""
        self.progress.close()
        if self.log is not None and status != "FINISHED":
            self.log.line(f"run ended: {status}")
            self.log.close()
        record_best(self.study, self.tracker, self.cfg)
        if not trials.count(self.study)["running"]:
            self.tracker.close_study(
                "FAILED" if self.limit.reason and status == "FINISHED" else status
            )

    def summary(self, resume_command: str) -> SweepSummary:
        """The summary (with the report, ``report.enabled``); StudyStopped when the failure
        limit stopped the study."""
        summary = build_summary(
            self.study, self.cfg, self.tracker, self.store, self.objective.overheads, resume_command
        )
        summary.report = report_text(self.study, self.cfg, self.tracker)
        if self.log is not None:
            self.log.line(summary.format())
            self.log.close()
        if self.limit.reason:
            raise StudyStopped(self.limit.reason, summary)
        return summary

    def _sampler_seed(self, existing: optuna.Study | None) -> int | None:
        """A seeded sampler never replays the samples of earlier runs or of other processes
        (each claims a slot of its own in the storage); None for an unseeded sampler."""
        seed = self.cfg.sampler.get("seed")
        if seed is None:
            return None
        before = len(existing.trials) if existing else 0
        return sampler_seed(seed, before, claim_slot(self.study))


def paused_states(cfg: DictConfig) -> PausedStates:
    """Where the study's paused trials keep their training states (``checkpoints.paused_gb``)."""
    return PausedStates(str(cfg.study.output_dir), cfg.checkpoints.get("paused_gb"))


def open_log(cfg: DictConfig) -> StudyLog | None:
    """The study's log file (``display.log_file``), its run's first line the command."""
    path = cfg.display.get("log_file")
    if not path:
        return None
    worker = cfg.study.get("worker")
    log = StudyLog(Path(str(path)), "" if worker is None else f"[worker {worker}] ")
    log.line(f"run started: {command_line()}")
    return log


def report_text(study: optuna.Study, cfg: DictConfig, tracker: Tracker) -> str:
    """Write the study report (``report.enabled``) and return it for the terminal; a report
    that cannot be written is a warning, never a failed sweep."""
    if not cfg.get("report") or not cfg.report.enabled:
        return ""
    try:
        return write_report(study, cfg, tracker).format()
    except Exception as exc:
        log.warning("could not write the study report: %s", mask(first_line(exc)))
        return ""


def study_summary(cfg: DictConfig, resume_command: str = "") -> SweepSummary:
    """The summary of the study a config names, read from its storage and MLflow (used after
    ``study.workers`` processes have run it)."""

    study = load_study(str(cfg.study.storage), str(cfg.study.name))
    tracker = build_tracker(cfg)
    tracker.attach(study.user_attrs.get(schema.PARENT_RUN_ATTR))
    overheads = [
        t.user_attrs[schema.OVERHEAD_ATTR]
        for t in study.get_trials(deepcopy=False)
        if schema.OVERHEAD_ATTR in t.user_attrs
    ]
    summary = build_summary(
        study, cfg, tracker, StudyCheckpoints.from_config(cfg), overheads, resume_command
    )
    summary.report = report_text(study, cfg, tracker)
    return summary
