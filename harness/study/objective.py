"""One trial: sample → apply to a config copy → fine-tune → record in Optuna and MLflow.

Whatever happens inside a trial ends in both records: COMPLETE / PRUNED (MLflow FINISHED),
FAIL with the error's class and message (MLflow FAILED), or FAIL as interrupted (MLflow KILLED,
when Ctrl-C / SIGTERM stopped it). A process that dies outright is handled by
:mod:`harness.study.recovery` on the next run.

Under the promotion scheduler (:mod:`harness.study.promotion`) a trial stopped at a rung is
paused: PRUNED with its training state saved; a promoted trial continues such a state.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial

from harness.base import devices, distributed, faults, interrupts
from harness.base.progress import StudyProgress
from harness.base.secrets import mask
from harness.records import schema, trials
from harness.records.runs import TrialRun
from harness.records.tracker import Tracker
from harness.study import ranks
from harness.study.heartbeat import TrialTakenOver, TrialWatch
from harness.study.paused import PausedStates
from harness.study.promotion import PromotionPruner
from harness.study.recovery import this_worker
from harness.study.retention import StudyCheckpoints, drop_mlflow_checkpoints
from harness.study.summary import record_best, show
from harness.train.memory import memory_figures, release_memory, reset_peak_memory

if TYPE_CHECKING:
    from datasets import DatasetDict
    from transformers import TrainerCallback

    from harness.metrics import MetricSuite
    from harness.study.setup import Prepared
    from harness.train.compute import ComputeMeter
    from harness.train.finetune import FinetuneResult
    from harness.train.model import BaseModel

log = logging.getLogger(__name__)


class FineTune(Protocol):
    """One fine-tune, as a trial runs it: :func:`harness.train.finetune.finetune` (the default),
    or a stand-in that drives the same callbacks without a model (the tests' scripted fake)."""

    def __call__(
        self,
        trial_cfg: DictConfig,
        base: BaseModel,
        datasets: DatasetDict,
        compute_metrics: MetricSuite,
        callbacks: list[TrainerCallback] = ...,
        checkpoint_dir: Path | None = ...,
        keep_checkpoint: Callable[[float], bool] | None = ...,
        trainer_bars: bool = ...,
        pause_to: Path | None = ...,
        resume_from: Path | None = ...,
        init_seed: int | None = ...,
        decisions: frozenset[int] | None = ...,
    ) -> FinetuneResult: ...


class PausedStateMissing(RuntimeError):
    """A promoted trial's saved state is not where it was written."""


@dataclass
class _Attempt:
    """One attempt at a trial, as far as it got: what its record (or its failure's) needs."""

    trial: optuna.Trial
    start: float  # time.perf_counter() at its start
    watch: TrialWatch
    paused: PausedStates | None  # where it pauses at a rung (None: it does not pause)
    values: dict[str, Any] = field(default_factory=dict)  # its sampled values (any param type)
    run: TrialRun | None = None
    meter: ComputeMeter | None = None
    saved: str | None = None  # stopped by a signal: where its training state was saved

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


class Objective:
    """The study's objective: one trial, sample → train → record (see the module).

    ``finetune``: what trains a trial's configuration (:class:`FineTune`); None, the real one
    (:func:`harness.train.finetune.finetune`, imported when the first trial starts).
    """

    prunes = True  # the pruner may stop a trial; its checkpoint kept if among the best

    def __init__(
        self,
        prepared: Prepared,
        tracker: Tracker,
        store: StudyCheckpoints,
        progress: StudyProgress,
        paused: PausedStates | None = None,
        finetune: FineTune | None = None,
    ) -> None:
        self.prepared = prepared
        self.tracker = tracker
        self.store = store
        self.progress = progress
        self.paused = paused  # where paused trials' training states go (the promotion scheduler)
        self.finetune = finetune
        self.cfg = prepared.cfg
        self.multi = self.cfg.study.get("second_objective") is not None
        self.overheads: list[float] = []
        self.current: int | None = None  # the trial this process is running
        self.pending: tuple[TrialRun, dict[str, str]] | None = None  # a run to end in after_trial
        self.taken_over: int | None = None  # a trial another worker failed while this ran it
        self.sampler_seed: int | None = None  # this process's (recorded on each trial)

    # (FinalObjective's: a re-run of a search trial's configuration, with its own seed)
    def _configure(self, trial: optuna.Trial) -> tuple[DictConfig, dict[str, Any]]:
        return self.prepared.space.sample(trial, self.cfg)

    def _number(self, trial: optuna.Trial | FrozenTrial) -> int:
        return trial.number

    def _seed(self, trial: optuna.Trial | FrozenTrial) -> int | None:
        return None

    def _init_seed(self, trial: optuna.Trial) -> int | None:
        """The seed of the model's initialisation when it is not ``train.seed`` (None)."""
        return None

    def _name(self, trial: optuna.Trial) -> str:
        seed = self._seed(trial)
        if seed is not None:
            return f"final-{self._number(trial)}-seed{seed}"
        source = trial.user_attrs.get(schema.CONTINUES_ATTR)
        return f"trial {trial.number}" + ("" if source is None else f" (continues {source})")

    def _continued(self, trial: optuna.Trial) -> tuple[FrozenTrial, Path] | tuple[None, None]:
        """A promoted trial: (the paused trial it continues, that trial's saved state)."""
        number = trial.user_attrs.get(schema.CONTINUES_ATTR)
        if number is None:
            return None, None
        source = trial.study._storage.get_trial(
            trial.study._storage.get_trial_id_from_study_id_trial_number(
                trial.study._study_id, int(number)
            )
        )
        state = self.paused.path(int(number)) if self.paused is not None else None
        if state is None or not state.is_dir():
            raise PausedStateMissing(
                f"the training state of trial {number} (paused at evaluation "
                f"{trials.paused_at(source)}) is not in {state}: with several machines "
                "and pruner=promotion, study.output_dir must be a folder they share"
            )
        return source, state

    def _pauses(self, trial: optuna.Trial) -> PausedStates | None:
        """Where this trial's training state goes when the promotion scheduler stops it at a
        rung (None: a stop prunes it, or nothing stops it)."""
        if self.prunes and not self.multi and isinstance(trial.study.pruner, PromotionPruner):
            return self.paused
        return None

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        """Sample → train → record; whatever happens ends in both records (see the module)."""
        watch = TrialWatch(trial, float(self.cfg.study.heartbeat_interval))
        attempt = _Attempt(trial, time.perf_counter(), watch, self._pauses(trial))
        self.current, self.pending = trial.number, None
        try:
            trial_cfg = self._sample(attempt)
            run = self._start_run(attempt, trial_cfg)
            meter, result = self._train(attempt, run, trial_cfg)
            self._record(attempt, run, meter, result)
        except KeyboardInterrupt as exc:  # Ctrl-C / SIGTERM: recorded, then the sweep stops
            self._interrupted(attempt, exc)
            raise
        except TrialTakenOver as exc:  # the other worker's record stands: nothing written
            self._taken_over(attempt, exc)
            raise
        except Exception as exc:
            self._failed(attempt, exc)
            raise
        finally:
            self._clean_up(attempt)
        self.current = None
        return self._outcome(result)

    # ------------------------------------------------------------------ sample

    def _sample(self, attempt: _Attempt) -> DictConfig:
        """The trial's configuration (its sampled values kept on ``attempt``)."""
        trial = attempt.trial
        trial.set_user_attr(schema.WORKER_ATTR, this_worker())
        trial.set_user_attr(schema.SAMPLER_SEED_ATTR, self.sampler_seed)
        trial.set_user_attr(schema.DEVICES_ATTR, devices.current())
        faults.set_trial(trial.number, final=self._seed(trial) is not None)
        faults.hit("sample")
        trial_cfg, attempt.values = self._configure(trial)
        self.progress.trial_started(self._number(trial))
        return trial_cfg

    def _start_run(self, attempt: _Attempt, trial_cfg: DictConfig) -> TrialRun:
        """The trial's MLflow run, with every param name of the study (a methods study's other
        methods' params as "n/a"), so that MLflow's compare view lines the runs up."""
        trial = attempt.trial
        unsampled = dict.fromkeys(self.prepared.space.param_names(), schema.NOT_SAMPLED)
        run = attempt.run = self.tracker.start_trial(
            self._number(trial),
            {**self.prepared.fixed_params(), **unsampled, **attempt.values},
            mask(OmegaConf.to_yaml(trial_cfg, resolve=True)),
            seed=self._seed(trial),
            trial_id=trial._trial_id,
        )
        trial.set_user_attr(schema.RUN_ID_ATTR, run.run_id)
        run.mark_enqueued(trial.user_attrs)  # study.enqueue / study.warm_start / recipe
        return run

    # ------------------------------------------------------------------ train

    def _train(
        self, attempt: _Attempt, run: TrialRun, trial_cfg: DictConfig
    ) -> tuple[ComputeMeter, FinetuneResult]:
        """The fine-tune (a promoted trial: continued from its paused state), with the study's
        callbacks; raises when another worker took the trial over or no evaluation scored."""
        # the training side imports transformers (6 s): here, where a trial starts, so that a
        # config error or --help never pays for it
        from harness.train.compute import ComputeMeter

        trial, metric = attempt.trial, self.cfg.study.metric
        resume_from = self._continue(trial, run)
        reset_peak_memory()
        meter = attempt.meter = ComputeMeter(len(self.prepared.datasets["train"]))
        attempt.watch.start()
        order = ranks.Order(
            trial.number,
            self._seed(trial) is not None,
            self._name(trial),
            trial_cfg,
            attempt.values,
            pruning=not self.multi and self.prunes,
            pause=attempt.paused is not None,
            resume_from=resume_from,
            init_seed=self._init_seed(trial),
            decisions=self._decisions(trial),
        )
        # under torchrun, trained by every rank (harness.study.ranks); else by this process
        # (study.resume_trials: a signal waits for the training state to be saved)
        with interrupts.deferred() if self._saves(trial) else contextlib.nullcontext():
            result = ranks.train(
                order, lambda extra: self._fine_tune(attempt, run, meter, trial_cfg, order, extra)
            )
        if attempt.watch.taken_over or attempt.watch.check():
            raise TrialTakenOver(
                "failed by another worker while it ran (no heartbeat "
                "for study.grace_period): stopped; its retry runs there"
            )
        if result.interrupted:
            self._save_interrupted(attempt, result)
        if result.value is None or math.isnan(result.value):
            raise ValueError(f"no evaluation gave a number for {metric} (NaN, or none ran)")
        return meter, result

    def _fine_tune(
        self,
        attempt: _Attempt,
        run: TrialRun,
        meter: ComputeMeter,
        trial_cfg: DictConfig,
        order: ranks.Order,
        extra: list[TrainerCallback],
    ) -> FinetuneResult:
        """The trial's fine-tune in this process, with the study's callbacks and ``extra``."""
        trial, resume_from = attempt.trial, order.resume_from
        method = trial_cfg.peft.method if self.cfg.get("method_space") else None
        return self._finetune()(
            trial_cfg,
            self.prepared.base,
            self.prepared.datasets,
            self.prepared.metrics,
            callbacks=[*self._callbacks(attempt, run, meter), *extra],
            checkpoint_dir=self.store.partial(trial.number),
            keep_checkpoint=(lambda value: self.store.wanted(trial.study, value, method))
            if self.prunes
            else None,  # a final-stage run keeps its own until the choice
            trainer_bars=bool(self.cfg.display.trainer_bars),
            pause_to=self._pause_to(attempt),
            resume_from=resume_from,
            init_seed=order.init_seed,
            decisions=order.decisions,
        )

    def _decisions(self, trial: optuna.Trial) -> frozenset[int] | None:
        """The evaluations the study's pruner decides at (the fine-tune skips the others before
        ``train.evaluate_from``): the promotion scheduler's rungs; none when nothing prunes the
        trial (a final-stage run, two objectives, pruner=none); None (every evaluation) for
        Optuna's other pruners, which may decide at any."""
        pruner = trial.study.pruner
        if self.multi or not self.prunes or isinstance(pruner, optuna.pruners.NopPruner):
            return frozenset()
        if isinstance(pruner, PromotionPruner):
            return pruner.rungs()
        return None

    def _saves(self, trial: optuna.Trial) -> bool:
        """``study.resume_trials``: does a signal save this trial's training state (a search
        trial with one objective, in one process), for the next run to continue it?"""
        return (
            bool(self.cfg.study.get("resume_trials"))
            and self.prunes
            and not self.multi
            and self.paused is not None
            and not distributed.launched()
        )

    def _pause_to(self, attempt: _Attempt) -> Path | None:
        """Where the fine-tune writes the trial's training state if it pauses at a rung or a
        signal stops it (None: it writes none)."""
        states = attempt.paused or (self.paused if self._saves(attempt.trial) else None)
        return None if states is None else states.partial(attempt.trial.number)

    def _save_interrupted(self, attempt: _Attempt, result: FinetuneResult) -> None:
        """A signal stopped the trial with its training state written: the state committed
        among the kept ones, then recorded on the trial (``harness.interrupted_state``), then
        the interruption raised (the trial ends FAIL, interrupted; the next run continues it:
        :func:`harness.study.recovery.queue_continuations`)."""
        assert self.paused is not None  # _saves
        trial = attempt.trial
        self.paused.commit(trial.number)
        step = result.resumed_step + result.steps
        trial.set_user_attr(schema.STEPS_TRAINED_ATTR, result.steps)
        trial.set_user_attr(
            schema.INTERRUPTED_STATE_ATTR,
            {
                "evaluation": result.evaluations,
                "step": step,
                "state": self.paused.relative(trial.number),
            },
        )
        attempt.saved = (
            f"at step {step} (evaluation {result.evaluations}): training state saved in "
            f"{self.paused.relative(trial.number)}, continued by the next run"
        )
        raise interrupts.Interrupted(interrupts.pending() or signal.SIGINT)

    def _finetune(self) -> FineTune:
        if self.finetune is None:
            from harness.train.finetune import finetune

            self.finetune = finetune
        return self.finetune

    def _continue(self, trial: optuna.Trial, run: TrialRun) -> Path | None:
        """A promoted trial starts with its paused trial's evaluations (rungs compare like with
        like) and curves; returns the training state it continues (None: a new trial)."""
        source, resume_from = self._continued(trial)
        if source is not None:
            for step, value in sorted(source.intermediate_values.items()):
                trial.report(value, step)
            self.tracker.continue_curves(
                source.user_attrs.get(schema.RUN_ID_ATTR), run, source.number, trial.number
            )
            faults.hit("promotion")
        return resume_from

    def _callbacks(
        self, attempt: _Attempt, run: TrialRun, meter: ComputeMeter
    ) -> list[TrainerCallback]:
        """The study's Trainer callbacks: pruning (not for two objectives or a final-stage
        run), metric curves, compute, progress, and a stop once another worker took over."""
        from harness.train.callbacks import (
            MetricsLogger,
            OnEvaluate,
            PruningCallback,
            SaveOnSignal,
            StopWhen,
        )

        trial, watch, metric = attempt.trial, attempt.watch, self.cfg.study.metric
        pruning: list[TrainerCallback] = []
        if not self.multi and self.prunes:
            pause = attempt.paused is not None
            reported, sign = trials.pruning_signal(self.cfg.study)
            pruning.append(PruningCallback(trial, reported, sign, pause=pause))
        return [
            *pruning,
            MetricsLogger(run.log_metrics),
            meter,
            OnEvaluate(
                lambda i, m: self.progress.evaluation(
                    self._number(trial), i, m.get(f"eval_{metric}")
                )
            ),
            # (under torchrun not mid-way: the other ranks would wait for this one forever;
            # a trial taken over stops at its end)
            *([] if distributed.launched() else [StopWhen(lambda: watch.taken_over)]),
            # last: after the pruner's decision at an evaluation (study.resume_trials)
            *([SaveOnSignal(interrupts.pending)] if self._saves(trial) else []),
        ]

    # ------------------------------------------------------------------ record

    def _record(
        self, attempt: _Attempt, run: TrialRun, meter: ComputeMeter, result: FinetuneResult
    ) -> None:
        """The trial's figures on the trial and its run, its checkpoint committed (and logged);
        the run ends in after_trial, with the state Optuna records."""
        trial = attempt.trial
        trial.set_user_attr(schema.TRAINABLE_PARAMS_ATTR, result.trainable_params)
        trial.set_user_attr(schema.STEPS_TRAINED_ATTR, result.steps)
        if result.pruned:  # what it reached (the pruner may have seen another metric)
            trial.set_user_attr(schema.BEST_SO_FAR_ATTR, result.value)
        tags = {schema.PRECISION_TAG: meter.precision}
        if result.paused and attempt.paused is not None:
            tags.update(self._record_pause(trial, attempt.paused, result))
        trial.set_user_attr(schema.TRAIN_RUNTIME_ATTR, round(result.train_runtime, 3))
        if result.checkpoint is not None:
            run.log_checkpoint(self._commit_checkpoint(trial, run, result))
        wall = attempt.elapsed()
        overhead = wall - result.train_runtime
        self.overheads.append(overhead)
        trial.set_user_attr(schema.OVERHEAD_ATTR, round(overhead, 3))
        _record_compute(trial, run, meter, wall)
        run.log_metrics(
            {**_summary(result), **memory_figures(), schema.OVERHEAD_METRIC: overhead},
            step=result.best_step,
        )
        # the run ends with the state Optuna records (after_trial, once it is told)
        self.pending = (run, tags)
        state = "PAUSED" if result.paused else "PRUNED" if result.pruned else "COMPLETE"
        self._report(trial, state, result.value, result.evaluations, wall, attempt.values)

    def _record_pause(
        self, trial: optuna.Trial, paused: PausedStates, result: FinetuneResult
    ) -> dict[str, str]:
        """A paused trial: its state is complete (committed), then recorded; the trial ends
        paused (PRUNED). Returns its run's tag."""
        paused.commit(trial.number)
        trial.set_user_attr(
            schema.PAUSED_ATTR,
            {
                "evaluation": result.evaluations,
                "step": result.resumed_step + result.steps,
                "state": paused.relative(trial.number),
            },
        )
        return {
            schema.PAUSED_TAG: f"at evaluation {result.evaluations}: training state "
            "saved, continued if promoted"
        }

    def _commit_checkpoint(
        self, trial: optuna.Trial, run: TrialRun, result: FinetuneResult
    ) -> Path:
        """The trial's checkpoint, complete: committed with its trial.json."""
        info = {
            "trial": self._number(trial),
            "seed": self._seed(trial),
            "value": result.value,
            "metric": self.cfg.study.metric,
            "params": trial.params,
            schema.RUN_ID_ATTR: run.run_id,
        }
        return self.store.commit(trial.number, info)

    def _outcome(self, result: FinetuneResult) -> float | tuple[float, float]:
        """What Optuna is told: pruned (raised), the value, or (value, the second objective)."""
        if result.pruned:
            raise optuna.TrialPruned(f"pruned at evaluation {result.evaluations}")
        assert result.value is not None  # _train raised otherwise
        if self.multi:  # (study metric, the second objective), the second minimized
            second = self.cfg.study.second_objective
            return result.value, float(
                result.trainable_params if second == "trainable_params" else result.train_runtime
            )
        return result.value

    # ------------------------------------------------------------------ failed, interrupted

    def _interrupted(self, attempt: _Attempt, exc: KeyboardInterrupt) -> None:
        """Ctrl-C / SIGTERM: the trial recorded as interrupted (its run KILLED; tagged with
        where its training state is when it was saved)."""
        self.pending = None
        reason = f"interrupted by {getattr(exc, 'name', 'KeyboardInterrupt')}"
        attempt.trial.set_user_attr(schema.INTERRUPTED_ATTR, reason)
        tags = {schema.ERROR_TAG: reason}
        if attempt.saved is not None:
            tags[schema.STATE_SAVED_TAG] = attempt.saved
        self._end_failed(attempt, tags, "KILLED")
        self._report(attempt.trial, "FAIL", None, 0, attempt.elapsed(), attempt.values, reason)

    def _taken_over(self, attempt: _Attempt, exc: TrialTakenOver) -> None:
        """Another worker failed the trial while this one ran it: its record stands."""
        self.current, self.pending, self.taken_over = None, None, attempt.trial.number
        self._report(attempt.trial, "FAIL", None, 0, attempt.elapsed(), attempt.values, str(exc))

    def _failed(self, attempt: _Attempt, exc: Exception) -> None:
        """The trial failed: its error (and traceback) on the trial and its run (FAILED)."""
        trial, run = attempt.trial, attempt.run
        self.current, self.pending = None, None
        error = mask(f"{type(exc).__name__}: {exc}")
        trial.set_user_attr(schema.ERROR_ATTR, error[:2000])
        if run is not None and not run.ended:
            run.log_traceback(mask("".join(traceback.format_exception(exc))))
        self._end_failed(
            attempt,
            {schema.ERROR_TAG: error, schema.ERROR_TYPE_TAG: type(exc).__name__},
            "FAILED",
        )
        where = f" (traceback: MLflow run {run.run_id}, traceback.txt)" if run else ""
        first = f"{error.splitlines()[0]}{where}"
        self._report(trial, "FAIL", None, 0, attempt.elapsed(), attempt.values, first)

    def _clean_up(self, attempt: _Attempt) -> None:
        """After any attempt: no heartbeat, no partial checkpoint or state, memory released."""
        attempt.watch.stop()
        self.store.discard(attempt.trial.number)
        if attempt.paused is not None:
            attempt.paused.discard(attempt.trial.number)
        faults.set_trial(None)
        release_memory()

    def _end_failed(self, attempt: _Attempt, tags: dict[str, str], status: str) -> None:
        """A failed trial's run ends FAIL with its reason (created if it failed before it had
        one: while sampling its parameters, say), with what it spent so far."""
        trial, run, meter = attempt.trial, attempt.run, attempt.meter
        if run is None:
            self.tracker.close_trial_run(
                self._number(trial),
                "FAIL",
                status,
                tags,
                seed=self._seed(trial),
                trial_id=trial._trial_id,
            )
        elif not run.ended:
            if meter is not None:
                _record_compute(trial, run, meter, attempt.elapsed())
                tags = {**tags, schema.PRECISION_TAG: meter.precision}
            run.finish("FAIL", tags, status=status)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna callback, once the trial's state is recorded: its run ends with that state,
        progress bar, checkpoints beyond the kept ones removed (locally and in MLflow), the
        parent run's best-so-far record; a promoted trial that ended frees the state it
        continued."""
        self.recorded(trial)
        self._end_run(trial)
        source = trial.user_attrs.get(schema.CONTINUES_ATTR)
        if (
            source is not None
            and self.paused is not None
            and trial.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        ):
            self.paused.remove(int(source))
        counted = trials.counted(study, trial)  # its configuration's first trial to end
        best = trials.best_trial(study)
        self.progress.trial_finished(
            counted, (best.number, trials.study_value(best)) if best else None
        )
        if self.cfg.checkpoints.mlflow == "kept":
            drop_mlflow_checkpoints(
                study, self.tracker, self.store, self.store.remove_unkept(study)
            )
        else:
            self.store.remove_unkept(study)
        record_best(study, self.tracker, self.cfg)

    def recorded(self, trial: FrozenTrial) -> None:
        """Optuna has recorded the trial's end; its run has not (the fault point ``recorded``)."""
        faults.set_trial(trial.number, final=self._seed(trial) is not None)
        faults.hit("recorded")
        faults.set_trial(None)

    def _end_run(self, trial: FrozenTrial) -> None:
        """The trial's run ends with the state Optuna recorded (FAIL: with the reason)."""
        if self.pending is None:
            return
        run, tags = self.pending
        self.pending = None
        if trial.state.name == "FAIL":  # Optuna refused the result: the run says why
            why = trials.failure_reason(trial)
            run.finish("FAIL", {**tags, schema.ERROR_TAG: why}, status="FAILED")
        else:
            run.finish(trial.state.name, tags)

    def _report(
        self,
        trial: optuna.Trial,
        state: str,
        value: float | None,
        evaluations: int,
        wall: float,
        values: dict[str, Any],  # sampled values: any param type
        error: str = "",
    ) -> None:
        """The trial's line on the terminal (and the study's log file)."""
        shown = "" if value is None else f" {self.cfg.study.metric} {value:.4f}"
        where = (
            f" after {evaluations} evaluations"
            if state == "PRUNED"
            else f" at evaluation {evaluations}"
            if state == "PAUSED"
            else ""
        )
        params = " ".join(f"{k}={show(v)}" for k, v in values.items())
        line = f"{self._name(trial)} {state}{shown}{where} in {wall:.1f} s | {params}"
        # the terminal or the launcher's pipe may be gone: the trial's record stands anyway
        with contextlib.suppress(OSError):
            self.progress.write(line + (f" | {error.splitlines()[0]}" if error else ""))


def _summary(result: FinetuneResult) -> dict[str, float]:
    """The run's figures of a trained trial (its best evaluation's validation metrics first)."""
    summary: dict[str, float] = {
        f"{schema.BEST_VAL_PREFIX}{k}": v for k, v in result.best_metrics.items()
    }
    summary.update(
        trainable_params=result.trainable_params,
        total_params=result.total_params,
        trainable_ratio=result.trainable_ratio,
        best_step=result.best_step,
        train_runtime_s=result.train_runtime,
        epochs_trained=result.epochs,
        # every run logs the same metric names (MLflow's compare view lines them up):
        # stopped_epoch is where training ended, early or not
        stopped_early=float(result.stopped_epoch is not None),
        stopped_epoch=result.epochs if result.stopped_epoch is None else result.stopped_epoch,
    )
    return summary


def _record_compute(
    trial: optuna.Trial, run: TrialRun, meter: ComputeMeter, wall: float
) -> dict[str, float]:
    """The trial's compute (complete, or spent so far when it failed) on the trial and its run,
    where the study's totals are summed from."""
    compute = {**meter.figures(), schema.WALL_TIME_METRIC: round(wall, 3)}
    try:
        trial.set_user_attr(schema.COMPUTE_ATTR, compute)
        run.log_metrics(compute, step=meter.steps)
    except Exception as exc:  # a failing trial's record is best effort: its error counts
        log.warning("could not record the compute of trial %d: %s", trial.number, exc)
    return compute
