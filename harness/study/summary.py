"""What a study reached: the summary printed at the end, and the parent run's best-so-far."""

from __future__ import annotations

import importlib.util
import json
import logging
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.base.secrets import mask
from harness.base.storages import dashboard_command
from harness.records import final, schema, trials
from harness.records.compute import study_compute

if TYPE_CHECKING:
    import optuna
    from omegaconf import DictConfig

    from harness.records.tracker import Tracker
    from harness.study.retention import StudyCheckpoints

log = logging.getLogger(__name__)


@dataclass
class SweepSummary:
    study_name: str
    storage: str
    metric: str
    direction: str
    n_trials: int
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    best_number: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_checkpoint: str | None = None
    best_artifact_uri: str | None = None
    tracking_uri: str = ""
    experiment: str = ""
    overheads: list[float] = field(default_factory=list)  # seconds, in trial order
    # methods study: method -> (best trial number, value, trainable params)
    per_method: dict[str, tuple[int, float, int | None]] = field(default_factory=dict)
    # two objectives: the Pareto front as (trial number, study metric, second objective)
    second_objective: str | None = None
    pareto: list[tuple[int, float, float]] = field(default_factory=list)
    resume_command: str = ""
    kept_checkpoints: list[int] = field(default_factory=list)  # trial numbers, best first
    checkpoints_dir: str = ""
    report: str = ""  # the study report's table and where it was written
    compute: str = ""  # what the trials cost, and what pruning saved
    final: list[str] = field(default_factory=list)  # the final stage: seeds' mean ± sd, test
    recipe: list[str] = field(default_factory=list)  # the recipe against the chosen config
    paused: str = ""  # the promotion scheduler: configurations paused, continued, dropped
    dashboard: bool = False  # optuna-dashboard is installed (the `dashboard` extra)

    def format(self) -> str:
        finished = self.complete + self.pruned
        lines = [self.report, ""] if self.report else []
        lines += [
            f"Study '{self.study_name}' ({mask(self.storage)}): {finished} of {self.n_trials} "
            f"trials finished: {self.complete} complete, {self.pruned} pruned, "
            f"{self.failed} failed",
        ]
        if self.paused:
            lines.append(self.paused)
        if finished > self.n_trials:
            lines.append(
                f"  ({finished - self.n_trials} more than study.n_trials: workers "
                "sharing the study started their last trials at the same moment)"
            )
        if self.best_number is None:
            lines.append("No completed trial yet.")
        else:
            lines.append(
                f"Best: trial {self.best_number}, validation {self.metric} "
                f"{self.best_value:.4f} ({self.direction})"
            )
            lines += [f"  {k} = {show(v)}" for k, v in self.best_params.items()]
            if self.best_checkpoint:
                lines.append(f"Best checkpoint: {self.best_checkpoint}")
            if self.best_artifact_uri:
                lines.append(f"  in MLflow: {self.best_artifact_uri}")
        lines += self.final
        if self.kept_checkpoints:
            lines.append(
                f"Checkpoints kept ({self.checkpoints_dir}): trials "
                f"{', '.join(map(str, self.kept_checkpoints))}"
            )
        if self.pareto:
            lines.append(
                f"Pareto front ({self.metric} {self.direction}, "
                f"{self.second_objective} minimize): {len(self.pareto)} trials"
            )
            for number, value, second in self.pareto:
                lines.append(
                    f"  trial {number}: {self.metric} {value:.4f}, "
                    f"{self.second_objective} {second:,.6g}"
                )
        if self.per_method:
            lines.append(f"Best per method (validation {self.metric}):")
            for method, (number, value, trainable) in self.per_method.items():
                params = f", {trainable:,} trainable params" if trainable else ""
                lines.append(f"  {method:<8} {value:.4f}  (trial {number}{params})")
        if self.compute:
            lines.append(self.compute)
        if len(self.overheads) > 1:
            later = self.overheads[1:]
            lines.append(
                f"Time per trial outside training and evaluation: first {self.overheads[0]:.2f} s, "
                f"then median {statistics.median(later):.2f} s (max {max(later):.2f} s)"
            )
        lines.append(
            f"MLflow UI: mlflow ui --backend-store-uri {mask(self.tracking_uri)}   "
            f"(experiment '{self.experiment}')"
        )
        dashboard = dashboard_command(self.storage) if self.dashboard else None
        if dashboard:
            lines.append(f"Optuna dashboard: {mask(dashboard)}")
        if self.resume_command:
            lines.append(f"Resume or extend: {mask(self.resume_command)} [study.n_trials=N]")
        lines += self.recipe  # last: what the search gained over the recipe
        return "\n".join(lines)


def show(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)


def describe(study: optuna.Study, cfg: DictConfig) -> str:
    """The study in a few lines, for the parent run's description (MLflow shows it on top)."""
    counts = trials.count(study)
    names = list(cfg.method_space) if cfg.get("method_space") else [cfg.peft.get("method")]
    methods = ", ".join("full fine-tuning" if m == "none" else str(m) for m in names)
    lines = [
        f"{cfg.model.name} ({mask(str(cfg.model.name_or_path))}) fine-tuned with {methods} on "
        f"data '{cfg.data.name}'; validation {cfg.study.metric} ({cfg.study.direction}).",
        f"Trials: {counts['finished']} finished of {cfg.study.n_trials} "
        f"({counts['complete']} complete, {counts['pruned']} pruned), {counts['failed']} "
        f"failed, {counts['running']} running.",
    ]
    compute = study_compute(study, final.companion(study)).format()
    if compute:
        lines.append(compute)
    best = trials.best_trial(study)
    if best is not None and len(study.directions) == 1:
        params = ", ".join(f"{k}={show(v)}" for k, v in best.params.items())
        lines.append(
            f"Best trial: {best.number}, {cfg.study.metric} "
            f"{trials.study_value(best):.4f} ({params})."
        )
    for method, trial in trials.best_per_method(study).items():
        lines.append(f"Best {method}: trial {trial.number}, {trials.study_value(trial):.4f}.")
    lines += final.lines(final.record(study), str(cfg.study.metric))
    lines += final.recipe_lines(final.record(study) or {}, str(cfg.study.metric))
    return "\n\n".join(lines)


def record_best(study: optuna.Study, tracker: Tracker, cfg: DictConfig | None = None) -> None:
    """The parent run's view of the study: counts, best trial and value (per method too), and
    (given the config) its description."""
    counts = trials.count(study)
    metrics: dict[str, float] = {
        f"{schema.TRIALS_PREFIX}{k}": v
        for k, v in counts.items()
        if k not in ("finished", "running", "waiting")
    }
    tags: dict[str, object] = {schema.FINISHED_TAG: counts["finished"]}  # MLflow: as text
    if cfg is not None:
        tags[schema.DESCRIPTION_TAG] = describe(study, cfg)
    best = trials.best_trial(study)
    if best is not None:
        metrics[schema.BEST_VALUE_METRIC] = trials.study_value(best)
        tags.update(
            {
                schema.BEST_TRIAL_TAG: best.number,
                schema.BEST_VALUE_TAG: trials.study_value(best),
                schema.BEST_RUN_TAG: best.user_attrs.get(schema.RUN_ID_ATTR, ""),
            }
        )
        tags.update({f"{schema.BEST_PARAM_PREFIX}{k}": v for k, v in best.params.items()})
    for method, trial in trials.best_per_method(study).items():
        tags[f"{schema.BEST_TRIAL_TAG}.{method}"] = trial.number
        metrics[f"{schema.BEST_VALUE_METRIC}.{method}"] = trials.study_value(trial)
    metrics.update(study_compute(study, final.companion(study)).metrics())
    if cfg is not None:
        metrics.update(final.parent_metrics(final.record(study), str(cfg.study.metric)))
    try:
        tracker.record_best({"tags": tags, "metrics": metrics}, counts["finished"])
    except Exception as exc:  # the study's own record is Optuna's; MLflow is a view of it
        log.warning("could not update the study's MLflow run: %s", exc)


def build_summary(
    study: optuna.Study,
    cfg: DictConfig,
    tracker: Tracker,
    store: StudyCheckpoints,
    overheads: list[float],
    resume_command: str,
) -> SweepSummary:
    counts = trials.count(study)
    summary = SweepSummary(
        study_name=study.study_name,
        storage=str(cfg.study.storage),
        metric=cfg.study.metric,
        direction=cfg.study.direction,
        n_trials=int(cfg.study.n_trials),
        complete=counts["complete"],
        pruned=counts["pruned"],
        failed=counts["failed"],
        tracking_uri=str(cfg.tracking.uri),
        experiment=tracker.experiment_name,
        overheads=overheads,
        resume_command=resume_command,
        compute=study_compute(study, final.companion(study)).format(),
        dashboard=importlib.util.find_spec("optuna_dashboard") is not None,
    )
    summary.final = final.lines(
        final.record(study), str(cfg.study.metric), trials.best_trial(study)
    )
    summary.recipe = final.recipe_lines(final.record(study) or {}, str(cfg.study.metric))
    summary.paused = trials.paused_line(study, counts)
    summary.per_method = {
        method: (t.number, trials.study_value(t), t.user_attrs.get(schema.TRAINABLE_PARAMS_ATTR))
        for method, t in trials.best_per_method(study).items()
    }
    kept = store.kept(study)
    summary.kept_checkpoints = [
        t.number for t in trials.ranked(study) if t.number in kept and store.path(t.number).is_dir()
    ]
    summary.checkpoints_dir = str(store.kept_dir)
    best = trials.best_trial(study)
    if best is None:
        return summary
    summary.best_number, summary.best_value = best.number, trials.study_value(best)
    if len(study.directions) > 1:
        summary.second_objective = cfg.study.second_objective
        summary.pareto = [
            (t.number, t.values[0], t.values[1])
            for t in sorted(study.best_trials, key=lambda t: t.number)
        ]
    summary.best_params = dict(best.params)
    local = store.best_path()
    info = local / "trial.json" if local else None
    if (
        info is not None
        and info.is_file()
        and json.loads(info.read_text()).get("trial") == best.number
    ):
        summary.best_checkpoint = str(local)
    run_id = best.user_attrs.get(schema.RUN_ID_ATTR)
    chosen = final.record(study) or {}
    if chosen.get("run_id") and local is not None:  # the final stage's choice is the best
        summary.best_checkpoint = (
            f"{local} (final-{chosen['trial']}-seed{chosen['seed']}: "
            "the chosen configuration's best seed)"
        )
        run_id = chosen["run_id"]
    if run_id:
        try:
            summary.best_artifact_uri = tracker.artifact_uri(run_id, schema.CHECKPOINT_ARTIFACT)
        except Exception:
            summary.best_artifact_uri = f"runs:/{run_id}/{schema.CHECKPOINT_ARTIFACT}"
    return summary
