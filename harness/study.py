"""A study from start to end: validate → prepare once → run (or resume) the trials → summary.

Everything that does not depend on a trial's values (data, tokenization, base weights, metric
modules) is prepared once, before the Optuna study or any MLflow run exists, so bad input stops
the run with nothing created.
"""

from __future__ import annotations

import gc
import json
import logging
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from harness.errors import ConfigError, first_line, instantiate
from harness.space import SearchSpace

log = logging.getLogger(__name__)

# Config sections that define what a study's trials mean. Resuming a study with different
# values would mix incomparable trials, so it is refused. (n_trials, timeout, sampler, pruner,
# tracking and display may change between runs.)
FINGERPRINT_KEYS = ("model", "data", "peft", "train", "search_space", "method_space", "methods",
                    "metrics", "metric_args")
FINGERPRINT_STUDY_KEYS = ("metric", "direction", "second_objective")
# study.second_objective -> what a trial reports for it (always minimized)
SECOND_OBJECTIVES = ("trainable_params", "train_time")
FINGERPRINT_ATTR = "harness.fingerprint"
PARENT_RUN_ATTR = "mlflow_parent_run_id"


# ----------------------------------------------------------------------------- validate


def validate_config(cfg: DictConfig) -> Any:
    """Cheap checks of the composed config (no data, no model): raise :class:`ConfigError`."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(missing[0], f"is required: set it on the command line ({missing[0]}=…)")
    try:
        OmegaConf.resolve(cfg.copy())
    except (InterpolationResolutionError, MissingMandatoryValue) as exc:
        key = getattr(exc, "full_key", None) or "config"
        raise ConfigError(str(key), first_line(exc)) from exc
    if cfg.get("method_space"):
        from harness.space import MethodSpace

        space = MethodSpace.from_config(cfg)
    else:
        space = SearchSpace.from_config(cfg.get("search_space"), cfg)
    study = cfg.study
    if not study.name or not str(study.name).strip():
        raise ConfigError("study.name", "must not be empty")
    if study.direction not in ("maximize", "minimize"):
        raise ConfigError(
            "study.direction", f"must be maximize or minimize, got {study.direction!r}"
        )
    second = study.get("second_objective")
    if second is not None:
        if second not in SECOND_OBJECTIVES:
            raise ConfigError("study.second_objective",
                              f"must be one of {', '.join(SECOND_OBJECTIVES)} or null, "
                              f"got {second!r}")
        if cfg.pruner.get("_target_") != "optuna.pruners.NopPruner":
            raise ConfigError(
                "pruner", f"Optuna cannot prune a multi-objective study (study.second_objective="
                f"{second}): choose pruner=none, or drop the second objective to keep pruning",
            )
    n_trials = study.n_trials
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ConfigError("study.n_trials", f"must be a positive integer, got {n_trials!r}")
    timeout = study.timeout
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                or timeout <= 0):
        raise ConfigError(
            "study.timeout", f"must be a positive number of seconds or null, got {timeout!r}"
        )
    instantiate("sampler", cfg.sampler)
    instantiate("pruner", cfg.pruner)
    return space


# ----------------------------------------------------------------------------- prepare


@dataclass
class Prepared:
    """What every trial of the study shares, built once."""

    cfg: DictConfig
    space: SearchSpace
    label_names: list[str]
    datasets: Any  # tokenized DatasetDict
    base: Any  # harness.model.BaseModel
    metrics: Any  # harness.metrics.MetricSuite


def prepare(cfg: DictConfig, space: SearchSpace) -> Prepared:
    """Load and tokenize the data, load the metrics and the base model; check a trial builds."""
    import tempfile

    from harness.data import load_labelled_data, tokenize
    from harness.finetune import training_arguments
    from harness.metrics import load_metrics
    from harness.model import build_trial_model, load_base_model, load_tokenizer

    data = load_labelled_data(cfg.data)
    with tempfile.TemporaryDirectory() as scratch:
        training_arguments(cfg.train, len(data.splits["train"]), scratch)
    metrics = load_metrics(list(cfg.metrics), cfg.get("metric_args"))
    names = metrics.output_names(data.num_labels) + ["loss"]
    if cfg.study.metric not in names:
        raise ConfigError("study.metric", f"'{cfg.study.metric}' is not computed by metrics "
                                          f"{list(cfg.metrics)} (choose one of {names})")
    tokenizer = load_tokenizer(cfg.model)
    tokenized = tokenize(data, tokenizer, cfg.data.max_length)
    base = load_base_model(cfg.model, data.label_names, tokenizer, int(cfg.train.seed))
    for method_cfg in space.trial_configs(cfg):
        model = build_trial_model(base, method_cfg.peft, int(cfg.train.seed))
        _check_method_runs(model, tokenized, base, method_cfg)
    return Prepared(cfg, space, data.label_names, tokenized, base, metrics)


def _check_method_runs(model: Any, tokenized: Any, base: Any, cfg: DictConfig) -> None:
    """One forward pass on two validation examples: a method the model family cannot run
    (e.g. prefix tuning without past key values) fails here, before any study exists."""
    import torch
    from transformers import DataCollatorWithPadding

    rows = tokenized["validation"].select(range(min(2, len(tokenized["validation"]))))
    rows = rows.remove_columns([c for c in rows.column_names
                                if c not in ("input_ids", "attention_mask", "token_type_ids")])
    batch = DataCollatorWithPadding(base.tokenizer)([rows[i] for i in range(len(rows))])
    model.eval()
    try:
        with torch.no_grad():
            model(**batch)
    except Exception as exc:
        raise ConfigError(
            "peft", f"method '{cfg.peft.method}' does not run on model "
            f"'{cfg.model.name}' ({base.model.config.model_type}): {first_line(exc)}"
        ) from exc


# ----------------------------------------------------------------------------- run


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

    def format(self) -> str:
        from harness.tracking import redact

        finished = self.complete + self.pruned
        lines = [
            f"Study '{self.study_name}' ({redact(self.storage)}): {finished} of {self.n_trials} "
            f"trials finished: {self.complete} complete, {self.pruned} pruned, "
            f"{self.failed} failed",
        ]
        if self.best_number is None:
            lines.append("No completed trial yet.")
        else:
            lines.append(f"Best: trial {self.best_number}, validation {self.metric} "
                         f"{self.best_value:.4f} ({self.direction})")
            lines += [f"  {k} = {_show(v)}" for k, v in self.best_params.items()]
            if self.best_checkpoint:
                lines.append(f"Best checkpoint: {self.best_checkpoint}")
            if self.best_artifact_uri:
                lines.append(f"  in MLflow: {self.best_artifact_uri}")
        if self.pareto:
            lines.append(f"Pareto front ({self.metric} {self.direction}, "
                         f"{self.second_objective} minimize): {len(self.pareto)} trials")
            for number, value, second in self.pareto:
                lines.append(f"  trial {number}: {self.metric} {value:.4f}, "
                             f"{self.second_objective} {second:,.6g}")
        if self.per_method:
            lines.append(f"Best per method (validation {self.metric}):")
            for method, (number, value, trainable) in self.per_method.items():
                params = f", {trainable:,} trainable params" if trainable else ""
                lines.append(f"  {method:<8} {value:.4f}  (trial {number}{params})")
        if len(self.overheads) > 1:
            later = self.overheads[1:]
            lines.append(
                f"Time per trial outside training and evaluation: first {self.overheads[0]:.2f} s, "
                f"then median {statistics.median(later):.2f} s (max {max(later):.2f} s)"
            )
        lines.append(f"MLflow UI: mlflow ui --backend-store-uri {self.tracking_uri}   "
                     f"(experiment '{self.experiment}')")
        if self.resume_command:
            lines.append(f"Resume or extend: {self.resume_command} [study.n_trials=N]")
        return "\n".join(lines)


def _show(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)


def run_sweep(cfg: DictConfig, resume_command: str = "") -> SweepSummary:
    """Run (or resume) the study described by a composed config and return its summary."""
    import optuna

    from harness.progress import StudyProgress
    from harness.tracking import Tracker

    space = validate_config(cfg)
    prepared = prepare(cfg, space)
    study_cfg = cfg.study
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.get("artifact_location"), study_cfg.name)
    tracker.check()
    storage = _storage(study_cfg.storage)
    fingerprint = _fingerprint(cfg)
    existing = _existing_study(storage, study_cfg.name, fingerprint)

    n_before = len(existing.trials) if existing else 0
    sampler_seed = cfg.sampler.get("seed")
    sampler_kwargs = {}
    if sampler_seed is not None:  # never replay the samples of earlier runs of this study
        sampler_kwargs["seed"] = int(sampler_seed) + n_before
    study = optuna.create_study(
        study_name=study_cfg.name,
        storage=storage,
        sampler=instantiate("sampler", cfg.sampler, **sampler_kwargs),
        pruner=instantiate("pruner", cfg.pruner),
        directions=[study_cfg.direction] + (["minimize"] if _multi(cfg) else []),
        load_if_exists=True,
    )
    if existing is None:
        study.set_user_attr(FINGERPRINT_ATTR, fingerprint)
    finished = _count(study)["finished"]
    if existing is not None:
        log.info("resuming study '%s': %d trials finished, %d to go", study_cfg.name, finished,
                 max(0, study_cfg.n_trials - finished))

    parent = tracker.open_study(study.user_attrs.get(PARENT_RUN_ATTR), _study_params(prepared))
    study.set_user_attr(PARENT_RUN_ATTR, parent)
    progress = StudyProgress(study_cfg.n_trials, finished, study_cfg.metric,
                             enabled=bool(cfg.display.progress))
    objective = Objective(prepared, tracker, progress)
    status = "FINISHED"
    try:
        remaining = study_cfg.n_trials - finished
        if remaining > 0:
            study.optimize(
                objective,
                n_trials=remaining,  # failed trials use up this run's attempts, not the total
                timeout=study_cfg.timeout,
                catch=(Exception,),
                callbacks=[
                    optuna.study.MaxTrialsCallback(
                        study_cfg.n_trials,
                        states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED),
                    ),
                    objective.after_trial,
                ],
                gc_after_trial=True,
            )
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        progress.close()
        _record_best(study, tracker)
        tracker.close_study(status)
    return _summary(study, cfg, tracker, objective, resume_command)


class Objective:
    """One trial: sample → apply to a config copy → fine-tune → record in Optuna and MLflow."""

    def __init__(self, prepared: Prepared, tracker: Any, progress: Any) -> None:
        self.prepared = prepared
        self.tracker = tracker
        self.progress = progress
        self.cfg = prepared.cfg
        self.output_dir = Path(self.cfg.study.output_dir)
        self.overheads: list[float] = []

    def __call__(self, trial: Any) -> float:
        import optuna

        from harness.callbacks import MetricsLogger, OnEvaluate, PruningCallback
        from harness.finetune import finetune

        start = time.perf_counter()
        cfg, metric = self.cfg, self.cfg.study.metric
        trial_cfg, values = self.prepared.space.sample(trial, cfg)
        self.progress.trial_started(trial.number)
        run = self.tracker.start_trial(
            trial.number,
            {**_fixed_params(self.prepared), **values},
            OmegaConf.to_yaml(trial_cfg, resolve=True),
        )
        trial.set_user_attr("mlflow_run_id", run.run_id)
        checkpoint = self.output_dir / f"trial-{trial.number}"
        try:
            result = finetune(
                trial_cfg,
                self.prepared.base,
                self.prepared.datasets,
                self.prepared.metrics,
                callbacks=[
                    *([] if _multi(cfg) else [PruningCallback(trial, metric)]),
                    MetricsLogger(run.log_metrics),
                    OnEvaluate(lambda i, m: self.progress.evaluation(
                        trial.number, i, m.get(f"eval_{metric}"))),
                ],
                checkpoint_dir=checkpoint,
                trainer_bars=bool(cfg.display.trainer_bars),
            )
            state = "PRUNED" if result.pruned else "COMPLETE"
            summary = {f"best_val_{k}": v for k, v in result.best_metrics.items()}
            summary.update(trainable_params=result.trainable_params,
                           total_params=result.total_params,
                           trainable_ratio=result.trainable_ratio, best_step=result.best_step,
                           train_runtime_s=result.train_runtime, epochs_trained=result.epochs)
            if result.stopped_epoch is not None:
                summary["stopped_epoch"] = result.stopped_epoch
            trial.set_user_attr("trainable_params", result.trainable_params)
            trial.set_user_attr("train_runtime_s", round(result.train_runtime, 3))
            if result.checkpoint is not None:
                run.log_checkpoint(result.checkpoint)
                self._keep_if_best(trial, result.value, result.checkpoint, run.run_id)
            wall = time.perf_counter() - start
            overhead = wall - result.train_runtime
            self.overheads.append(overhead)
            trial.set_user_attr("overhead_s", round(overhead, 3))
            run.log_metrics({**summary, "wall_time_s": wall, "overhead_s": overhead},
                            step=result.best_step)
            run.finish(state)
            self._report(trial.number, state, result.value, result.evaluations, wall, values)
        except BaseException as exc:
            if not run.ended:
                state = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAIL"
                run.finish(state, {"error": f"{type(exc).__name__}: {exc}"})
                self._report(trial.number, "FAIL", None, 0, time.perf_counter() - start, values,
                             error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            shutil.rmtree(checkpoint, ignore_errors=True)
            gc.collect()
        if result.pruned:
            raise optuna.TrialPruned(f"pruned at evaluation {result.evaluations}")
        if _multi(cfg):  # (study metric, the second objective), the second minimized
            second = cfg.study.second_objective
            return result.value, float(result.trainable_params if second == "trainable_params"
                                        else result.train_runtime)
        return result.value

    def after_trial(self, study: Any, trial: Any) -> None:
        """Optuna callback: progress bar and the parent run's best-so-far record."""
        import optuna

        counted = trial.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        best = _best_trial(study)
        self.progress.trial_finished(counted, (best.number, _primary(best)) if best else None)
        _record_best(study, self.tracker)

    def _keep_if_best(self, trial: Any, value: float, checkpoint: Path, run_id: str) -> None:
        """The study keeps one local checkpoint, the best so far (every trial's is in MLflow)."""
        from harness.callbacks import is_better

        best = _best_trial(trial.study)
        if best is not None and not is_better(value, _primary(best), self.cfg.study.direction):
            return
        info = {"trial": trial.number, "value": value, "metric": self.cfg.study.metric,
                "params": trial.params, "mlflow_run_id": run_id}
        (checkpoint / "trial.json").write_text(json.dumps(info, indent=2) + "\n")
        target, old = self.output_dir / "best", self.output_dir / "best.old"
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        checkpoint.rename(target)
        shutil.rmtree(old, ignore_errors=True)

    def _report(self, number: int, state: str, value: float | None, evaluations: int,
                wall: float, values: dict[str, Any], error: str = "") -> None:
        shown = "" if value is None else f" {self.cfg.study.metric} {value:.4f}"
        where = f" after {evaluations} evaluations" if state == "PRUNED" else ""
        params = " ".join(f"{k}={_show(v)}" for k, v in values.items())
        line = f"trial {number} {state}{shown}{where} in {wall:.1f} s | {params}"
        self.progress.write(line + (f" | {error.splitlines()[0]}" if error else ""))


# ----------------------------------------------------------------------------- helpers


def _storage(url: str) -> Any:
    import optuna

    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.get_storage(url)
    except Exception as exc:
        raise ConfigError("study.storage", f"cannot open '{url}': {exc}") from exc


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


def _count(study: Any) -> dict[str, int]:
    from optuna.trial import TrialState

    states = [t.state for t in study.get_trials(deepcopy=False)]
    complete, pruned = states.count(TrialState.COMPLETE), states.count(TrialState.PRUNED)
    return {"complete": complete, "pruned": pruned, "failed": states.count(TrialState.FAIL),
            "finished": complete + pruned}


def _multi(cfg: DictConfig) -> bool:
    return cfg.study.get("second_objective") is not None


def _primary(trial: Any) -> float:
    """A trial's value of the study metric (the first objective)."""
    return trial.values[0]


def _best_trial(study: Any) -> Any:
    """The best trial on the study metric (for two objectives: on the first, among the
    Pareto front)."""
    if len(study.directions) > 1:
        front = study.best_trials
        if not front:
            return None
        sign = 1 if study.directions[0].name == "MAXIMIZE" else -1
        return max(front, key=lambda t: sign * t.values[0])
    try:
        return study.best_trial
    except ValueError:  # no completed trial yet
        return None


def _fixed_params(prepared: Prepared) -> dict[str, Any]:
    cfg = prepared.cfg
    return {
        "model": cfg.model.name,
        "model.name_or_path": str(cfg.model.name_or_path),
        "data": cfg.data.name,
        "method": "search" if cfg.get("method_space") else cfg.peft.method,
        "labels": ",".join(prepared.label_names),
    }


def _study_params(prepared: Prepared) -> dict[str, Any]:
    cfg = prepared.cfg
    space = {key: OmegaConf.to_container(cfg[key], resolve=True)
             for key in ("search_space", "method_space") if cfg.get(key)}
    return {
        **_fixed_params(prepared),
        "study.metric": cfg.study.metric,
        "study.direction": cfg.study.direction,
        "sampler": cfg.sampler._target_,
        "sampler.seed": cfg.sampler.get("seed"),
        "pruner": cfg.pruner._target_,
        **{key: json.dumps(value) for key, value in space.items()},
        **{f"data.{k}_size": len(v) for k, v in prepared.datasets.items()},
    }


def _best_per_method(study: Any) -> dict[str, tuple[int, float, int | None]]:
    """Methods studies: the best completed trial of each method."""
    from optuna.trial import TrialState

    from harness.callbacks import is_better
    from harness.space import MethodSpace

    direction = "maximize" if study.directions[0].name == "MAXIMIZE" else "minimize"
    best: dict[str, Any] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        method = trial.params.get(MethodSpace.PARAM)
        if method is not None and (method not in best
                                   or is_better(_primary(trial), _primary(best[method]),
                                                direction)):
            best[method] = trial
    return {m: (t.number, _primary(t), t.user_attrs.get("trainable_params"))
            for m, t in sorted(best.items())}


def _record_best(study: Any, tracker: Any) -> None:
    counts = _count(study)
    metrics = {f"trials_{k}": v for k, v in counts.items() if k != "finished"}
    tags: dict[str, Any] = {"optuna.n_trials_finished": counts["finished"]}
    best = _best_trial(study)
    if best is not None:
        metrics["best_value"] = _primary(best)
        tags.update({"best_trial": best.number, "best_value": _primary(best),
                     "best_run_id": best.user_attrs.get("mlflow_run_id", "")})
        tags.update({f"best.{k}": v for k, v in best.params.items()})
    for method, (number, value, _) in _best_per_method(study).items():
        tags[f"best_trial.{method}"] = number
        metrics[f"best_value.{method}"] = value
    try:
        tracker.record_best({"tags": tags, "metrics": metrics}, counts["finished"])
    except Exception as exc:  # the study's own record is Optuna's; MLflow is a view of it
        log.warning("could not update the study's MLflow run: %s", exc)


def _summary(study: Any, cfg: DictConfig, tracker: Any, objective: Objective,
             resume_command: str) -> SweepSummary:
    counts = _count(study)
    summary = SweepSummary(
        study_name=study.study_name, storage=str(cfg.study.storage), metric=cfg.study.metric,
        direction=cfg.study.direction, n_trials=int(cfg.study.n_trials),
        complete=counts["complete"], pruned=counts["pruned"], failed=counts["failed"],
        tracking_uri=str(cfg.tracking.uri), experiment=tracker.experiment_name,
        overheads=objective.overheads, resume_command=resume_command,
    )
    summary.per_method = _best_per_method(study)
    best = _best_trial(study)
    if best is not None:
        summary.best_number, summary.best_value = best.number, _primary(best)
        if _multi(cfg):
            summary.second_objective = cfg.study.second_objective
            summary.pareto = [(t.number, t.values[0], t.values[1])
                              for t in sorted(study.best_trials, key=lambda t: t.number)]
        summary.best_params = dict(best.params)
        local = Path(cfg.study.output_dir) / "best"
        info = local / "trial.json"
        if info.is_file() and json.loads(info.read_text()).get("trial") == best.number:
            summary.best_checkpoint = str(local)
        run_id = best.user_attrs.get("mlflow_run_id")
        if run_id:
            try:
                summary.best_artifact_uri = tracker.artifact_uri(run_id, "checkpoint")
            except Exception:
                summary.best_artifact_uri = f"runs:/{run_id}/checkpoint"
    return summary
