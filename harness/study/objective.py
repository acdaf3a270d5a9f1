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
import time
import traceback
from typing import Any

import optuna
from omegaconf import OmegaConf

from harness.base import faults
from harness.base.secrets import mask
from harness.records import schema, trials
from harness.study.heartbeat import TrialTakenOver, TrialWatch
from harness.study.kept import drop_mlflow_checkpoints
from harness.study.paused import PausedStates
from harness.study.promotion import PromotionPruner
from harness.study.recovery import this_worker
from harness.study.summary import record_best, show
from harness.train.memory import memory_figures, release_memory, reset_peak_memory

log = logging.getLogger(__name__)


class PausedStateMissing(RuntimeError):
    """A promoted trial's saved state is not where it was written."""


class Objective:
    def __init__(
        self,
        prepared: Any,
        tracker: Any,
        store: Any,
        progress: Any,
        paused: PausedStates | None = None,
    ) -> None:
        self.prepared = prepared
        self.tracker = tracker
        self.store = store
        self.progress = progress
        self.paused = paused  # where paused trials' training states go (the promotion scheduler)
        self.cfg = prepared.cfg
        self.multi = self.cfg.study.get("second_objective") is not None
        self.overheads: list[float] = []
        self.current: int | None = None  # the trial this process is running
        self.pending: tuple[Any, dict[str, str]] | None = None  # a run to end in after_trial
        self.taken_over: int | None = None  # a trial another worker failed while this ran it
        self.prunes = True  # the pruner may stop a trial; its checkpoint kept if among the best
        self.sampler_seed: int | None = None  # this process's (recorded on each trial)

    def _configure(self, trial: Any) -> tuple[Any, dict[str, Any]]:  # (FinalObjective's: a re-run)
        return self.prepared.space.sample(trial, self.cfg)

    def _number(self, trial: Any) -> int:
        return trial.number

    def _seed(self, trial: Any) -> int | None:
        return None

    def _init_seed(self, trial: Any) -> int | None:
        """The seed of the model's initialisation when it is not ``train.seed`` (None)."""
        return None

    def _name(self, trial: Any) -> str:
        seed = self._seed(trial)
        if seed is not None:
            return f"final-{self._number(trial)}-seed{seed}"
        source = trial.user_attrs.get(schema.CONTINUES_ATTR)
        return f"trial {trial.number}" + ("" if source is None else f" (continues {source})")

    def _continued(self, trial: Any) -> tuple[Any, Any]:
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

    def __call__(self, trial: Any) -> float | tuple[float, float]:
        # the training side imports transformers (6 s): here, where a trial starts, so that a
        # config error or --help never pays for it
        from harness.train.callbacks import MetricsLogger, OnEvaluate, PruningCallback, StopWhen
        from harness.train.compute import ComputeMeter
        from harness.train.finetune import finetune

        start = time.perf_counter()
        cfg, metric = self.cfg, self.cfg.study.metric
        self.current, self.pending = trial.number, None
        run, meter, values = None, None, {}
        watch = TrialWatch(trial, float(cfg.study.heartbeat_interval))
        pausing = (
            self.prunes
            and not self.multi
            and self.paused is not None
            and isinstance(trial.study.pruner, PromotionPruner)
        )
        try:
            trial.set_user_attr(schema.WORKER_ATTR, this_worker())
            trial.set_user_attr(schema.SAMPLER_SEED_ATTR, self.sampler_seed)
            faults.set_trial(trial.number, final=self._seed(trial) is not None)
            faults.hit("sample")
            trial_cfg, values = self._configure(trial)
            method = trial_cfg.peft.method if cfg.get("method_space") else None
            self.progress.trial_started(self._number(trial))
            # every trial run has every param name of the study (a methods study's other
            # methods' params as "n/a"), so that MLflow's compare view lines the runs up
            unsampled = dict.fromkeys(self.prepared.space.param_names(), schema.NOT_SAMPLED)
            run = self.tracker.start_trial(
                self._number(trial),
                {**self.prepared.fixed_params(), **unsampled, **values},
                mask(OmegaConf.to_yaml(trial_cfg, resolve=True)),
                seed=self._seed(trial),
                trial_id=trial._trial_id,
            )
            trial.set_user_attr(schema.RUN_ID_ATTR, run.run_id)
            run.mark_enqueued(trial.user_attrs)  # study.enqueue / study.warm_start / recipe
            source, resume_from = self._continued(trial)
            if source is not None:  # earlier evaluations first: rungs compare like with like
                for step, value in sorted(source.intermediate_values.items()):
                    trial.report(value, step)
                self.tracker.continue_curves(
                    source.user_attrs.get(schema.RUN_ID_ATTR), run, source.number, trial.number
                )
                faults.hit("promotion")
            reset_peak_memory()
            meter = ComputeMeter(len(self.prepared.datasets["train"]))
            watch.start()
            result = finetune(
                trial_cfg,
                self.prepared.base,
                self.prepared.datasets,
                self.prepared.metrics,
                callbacks=[
                    *(
                        []
                        if self.multi or not self.prunes
                        else [PruningCallback.for_study(trial, cfg.study, pause=pausing)]
                    ),
                    MetricsLogger(run.log_metrics),
                    meter,
                    OnEvaluate(
                        lambda i, m: self.progress.evaluation(
                            self._number(trial), i, m.get(f"eval_{metric}")
                        )
                    ),
                    StopWhen(lambda: watch.taken_over),
                ],
                checkpoint_dir=self.store.partial(trial.number),
                keep_checkpoint=(lambda value: self.store.wanted(trial.study, value, method))
                if self.prunes
                else None,  # a final-stage run keeps its own until the choice
                trainer_bars=bool(cfg.display.trainer_bars),
                pause_to=self.paused.partial(trial.number) if pausing else None,
                resume_from=resume_from,
                init_seed=self._init_seed(trial),
            )
            if watch.taken_over or watch.check():
                raise TrialTakenOver(
                    "failed by another worker while it ran (no heartbeat "
                    "for study.grace_period): stopped; its retry runs there"
                )
            if result.value is None or math.isnan(result.value):
                raise ValueError(f"no evaluation gave a number for {metric} (NaN, or none ran)")
            state = "PRUNED" if result.pruned else "COMPLETE"
            summary = {f"{schema.BEST_VAL_PREFIX}{k}": v for k, v in result.best_metrics.items()}
            summary.update(
                trainable_params=result.trainable_params,
                total_params=result.total_params,
                trainable_ratio=result.trainable_ratio,
                best_step=result.best_step,
                train_runtime_s=result.train_runtime,
                epochs_trained=result.epochs,
                # every run logs the same metric names (MLflow's compare view lines
                # them up): stopped_epoch is where training ended, early or not
                stopped_early=float(result.stopped_epoch is not None),
                stopped_epoch=(
                    result.epochs if result.stopped_epoch is None else result.stopped_epoch
                ),
            )
            trial.set_user_attr(schema.TRAINABLE_PARAMS_ATTR, result.trainable_params)
            trial.set_user_attr(schema.STEPS_TRAINED_ATTR, result.steps)
            if result.pruned:  # what it reached (the pruner may have seen another metric)
                trial.set_user_attr(schema.BEST_SO_FAR_ATTR, result.value)
            tags = {schema.PRECISION_TAG: meter.precision}
            if result.paused:  # the state is complete: recorded, then the trial ends paused
                self.paused.commit(trial.number)
                trial.set_user_attr(
                    schema.PAUSED_ATTR,
                    {
                        "evaluation": result.evaluations,
                        "step": result.resumed_step + result.steps,
                        "state": self.paused.relative(trial.number),
                    },
                )
                tags[schema.PAUSED_TAG] = (
                    f"at evaluation {result.evaluations}: training state "
                    "saved, continued if promoted"
                )
            trial.set_user_attr(schema.TRAIN_RUNTIME_ATTR, round(result.train_runtime, 3))
            if result.checkpoint is not None:
                info = {
                    "trial": self._number(trial),
                    "seed": self._seed(trial),
                    "value": result.value,
                    "metric": metric,
                    "params": trial.params,
                    schema.RUN_ID_ATTR: run.run_id,
                }
                run.log_checkpoint(self.store.commit(trial.number, info))
            wall = time.perf_counter() - start
            overhead = wall - result.train_runtime
            self.overheads.append(overhead)
            trial.set_user_attr(schema.OVERHEAD_ATTR, round(overhead, 3))
            _record_compute(trial, run, meter, wall)
            run.log_metrics(
                {**summary, **memory_figures(), schema.OVERHEAD_METRIC: overhead},
                step=result.best_step,
            )
            # the run ends with the state Optuna records (after_trial, once it is told)
            self.pending = (run, tags)
            self._report(
                trial,
                "PAUSED" if result.paused else state,
                result.value,
                result.evaluations,
                wall,
                values,
            )
        except KeyboardInterrupt as exc:  # Ctrl-C / SIGTERM: recorded, then the sweep stops
            self.pending = None
            reason = f"interrupted by {getattr(exc, 'name', 'KeyboardInterrupt')}"
            trial.set_user_attr(schema.INTERRUPTED_ATTR, reason)
            self._end_failed(trial, run, meter, start, {schema.ERROR_TAG: reason}, "KILLED")
            self._report(trial, "FAIL", None, 0, time.perf_counter() - start, values, error=reason)
            raise
        except TrialTakenOver as exc:  # the other worker's record stands: nothing written
            self.current, self.pending, self.taken_over = None, None, trial.number
            self._report(
                trial, "FAIL", None, 0, time.perf_counter() - start, values, error=str(exc)
            )
            raise
        except Exception as exc:
            self.current, self.pending = None, None
            error = mask(f"{type(exc).__name__}: {exc}")
            trial.set_user_attr(schema.ERROR_ATTR, error[:2000])
            if run is not None and not run.ended:
                run.log_traceback(mask("".join(traceback.format_exception(exc))))
            self._end_failed(
                trial,
                run,
                meter,
                start,
                {schema.ERROR_TAG: error, schema.ERROR_TYPE_TAG: type(exc).__name__},
                "FAILED",
            )
            where = f" (traceback: MLflow run {run.run_id}, traceback.txt)" if run else ""
            self._report(
                trial,
                "FAIL",
                None,
                0,
                time.perf_counter() - start,
                values,
                error=f"{error.splitlines()[0]}{where}",
            )
            raise
        finally:
            watch.stop()
            self.store.discard(trial.number)
            if pausing:
                self.paused.discard(trial.number)
            faults.set_trial(None)
            release_memory()
        self.current = None
        if result.pruned:
            raise optuna.TrialPruned(f"pruned at evaluation {result.evaluations}")
        if self.multi:  # (study metric, the second objective), the second minimized
            second = cfg.study.second_objective
            return result.value, float(
                result.trainable_params if second == "trainable_params" else result.train_runtime
            )
        return result.value

    def _end_failed(
        self, trial: Any, run: Any, meter: Any, start: float, tags: dict[str, str], status: str
    ) -> None:
        """A failed trial's run ends FAIL with its reason (created if it failed before it had
        one: while sampling its parameters, say), with what it spent so far."""
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
                _record_compute(trial, run, meter, time.perf_counter() - start)
                tags = {**tags, schema.PRECISION_TAG: meter.precision}
            run.finish("FAIL", tags, status=status)

    def after_trial(self, study: Any, trial: Any) -> None:
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
        counted = source is None and trial.state in (
            optuna.trial.TrialState.COMPLETE,
            optuna.trial.TrialState.PRUNED,
        )
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

    def recorded(self, trial: Any) -> None:
        """Optuna has recorded the trial's end; its run has not (the fault point ``recorded``)."""
        faults.set_trial(trial.number, final=self._seed(trial) is not None)
        faults.hit("recorded")
        faults.set_trial(None)

    def _end_run(self, trial: Any) -> None:
        """The trial's run ends with the state Optuna recorded (FAIL: with the reason)."""
        if self.pending is None:
            return
        run, tags = self.pending
        self.pending = None
        if trial.state.name == "FAIL":  # Optuna refused the result: the run says why
            why = (
                trial.user_attrs.get(schema.ERROR_ATTR)
                or trial.user_attrs.get(schema.INTERRUPTED_ATTR)
                or "Optuna recorded the trial as failed when it was told its result"
            )
            run.finish("FAIL", {**tags, schema.ERROR_TAG: why}, status="FAILED")
        else:
            run.finish(trial.state.name, tags)

    def _report(
        self,
        trial: Any,
        state: str,
        value: float | None,
        evaluations: int,
        wall: float,
        values: dict[str, Any],
        error: str = "",
    ) -> None:
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


def _record_compute(trial: Any, run: Any, meter: Any, wall: float) -> dict[str, float]:
    """The trial's compute (complete, or spent so far when it failed) on the trial and its run,
    where the study's totals are summed from."""
    compute = {**meter.figures(), schema.WALL_TIME_METRIC: round(wall, 3)}
    try:
        trial.set_user_attr(schema.COMPUTE_ATTR, compute)
        run.log_metrics(compute, step=meter.steps)
    except Exception as exc:  # a failing trial's record is best effort: its error counts
        log.warning("could not record the compute of trial %d: %s", trial.number, exc)
    return compute
