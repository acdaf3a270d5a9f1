"""Questions about a study's trials in Optuna's storage: counts, the best trial, the best per
method, a ranking."""

from __future__ import annotations

import math
from typing import Any

from optuna.trial import TrialState

from harness.records import schema


def count(study: Any) -> dict[str, int]:
    """Trials by state; ``finished`` = complete + pruned (what ``study.n_trials`` counts)."""

    states = [t.state for t in study.get_trials(deepcopy=False)]
    complete, pruned = states.count(TrialState.COMPLETE), states.count(TrialState.PRUNED)
    return {"complete": complete, "pruned": pruned, "failed": states.count(TrialState.FAIL),
            "running": states.count(TrialState.RUNNING),
            "waiting": states.count(TrialState.WAITING), "finished": complete + pruned}


def pruning_signal(study_cfg: Any) -> tuple[str, float]:
    """What a trial reports to the pruner at each evaluation: (validation metric, the sign that
    puts it in the study's direction). ``study.prune_metric`` (null: the study metric); ``loss``
    is minimized, the other metrics maximized."""
    name = study_cfg.get("prune_metric") or study_cfg.metric
    own = study_cfg.direction if name == study_cfg.metric else (
        "minimize" if name == "loss" else "maximize")
    return str(name), 1.0 if own == study_cfg.direction else -1.0


def study_value(trial: Any) -> float:
    """A trial's value of the study metric (the first objective)."""
    return trial.values[0]


def direction(study: Any) -> str:
    """The study metric's direction: maximize or minimize."""
    return "maximize" if study.directions[0].name == "MAXIMIZE" else "minimize"


def best_trial(study: Any) -> Any:
    """The best trial on the study metric (for two objectives: on the first, among the
    Pareto front); None before any trial completed."""
    if len(study.directions) > 1:
        front = study.best_trials
        if not front:
            return None
        sign = 1 if direction(study) == "maximize" else -1
        return max(front, key=lambda t: sign * t.values[0])
    try:
        return study.best_trial
    except ValueError:  # no completed trial yet
        return None


def ranked(study: Any) -> list[Any]:
    """Completed trials, best first on the study metric."""

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    sign = -1 if direction(study) == "maximize" else 1
    return sorted(done, key=lambda t: (sign * study_value(t), t.number))


def best_per_method(study: Any) -> dict[str, Any]:
    """Methods studies: the best completed trial of each method (empty for other studies)."""

    best: dict[str, Any] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        method = trial.params.get(schema.METHOD_PARAM)
        if method is not None and (method not in best or is_better(
                study_value(trial), study_value(best[method]), direction(study))):
            best[method] = trial
    return dict(sorted(best.items()))


def is_better(value: float, best: float | None, direction: str) -> bool:
    """Is ``value`` better than ``best`` (None or NaN: nothing yet) in ``direction``?"""
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value > best if direction == "maximize" else value < best


def final_study_name(study_name: str) -> str:
    """The companion study that holds a study's final-stage runs."""
    return f"{study_name}{schema.FINAL_STUDY_SUFFIX}"


def is_final(study: Any) -> bool:
    return study.study_name.endswith(schema.FINAL_STUDY_SUFFIX)


def final_key(trial: Any) -> tuple[int, int]:
    """A final-stage run's (trial it re-runs, seed)."""
    return int(trial.user_attrs[schema.FINAL_TRIAL_ATTR]), int(trial.user_attrs[
        schema.FINAL_SEED_ATTR])


def stored_attrs(study: Any) -> dict[str, Any]:
    """The study's user attributes as stored now (another process may have written since
    ``study.user_attrs`` was read)."""
    return study._storage.get_study_user_attrs(study._study_id)
