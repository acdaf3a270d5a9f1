"""Questions about a study's trials in Optuna's storage: counts, the best trial, the best per
method, a ranking."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from harness.base.direction import is_better
from harness.records import schema

if TYPE_CHECKING:
    import optuna
    from omegaconf import DictConfig


_ENDED = (TrialState.COMPLETE, TrialState.PRUNED)


def count(study: optuna.Study) -> dict[str, int]:
    """Configurations by state; ``finished`` = complete + pruned (what ``study.n_trials``
    counts).

    Without the promotion scheduler or ``study.resume_trials`` a configuration is one trial.
    With them, a configuration may go on in later trials (continuations): ``finished`` counts
    the configurations one of whose trials ended (its first, or, when that one was interrupted
    with its state saved, the continuation that ended first), ``complete`` those that reached
    the full budget, ``pruned`` the others (``paused``: of these, those whose training state
    waits for a promotion). ``running`` and ``waiting`` count configurations that have not
    finished (:func:`stands_for_config`); ``continuing`` the continuations of finished ones
    running or queued (promotions); ``continued`` those that ended; ``failed`` every failed
    trial."""

    every = study.get_trials(deepcopy=False)
    ended = first_ended(every)
    stands = [stands_for_config(t, ended) for t in every]
    first_states = [t.state for t, own in zip(every, stands, strict=True) if own]
    finished = first_states.count(TrialState.COMPLETE) + first_states.count(TrialState.PRUNED)
    complete = sum(1 for t in every if t.state == TrialState.COMPLETE)
    later = [t.state for t, own in zip(every, stands, strict=True) if not own]
    return {
        "complete": complete,
        "pruned": finished - complete,
        "failed": sum(1 for t in every if t.state == TrialState.FAIL),
        "running": first_states.count(TrialState.RUNNING),
        "waiting": first_states.count(TrialState.WAITING),
        "finished": finished,
        "paused": len(paused(study, every)),
        "continuing": later.count(TrialState.RUNNING) + later.count(TrialState.WAITING),
        "continued": later.count(TrialState.COMPLETE) + later.count(TrialState.PRUNED),
    }


def is_continuation(trial: optuna.Trial | FrozenTrial) -> bool:
    """Does ``trial`` continue a paused (or interrupted) trial from its saved training state?"""
    return schema.CONTINUES_ATTR in trial.user_attrs


def first_ended(every: Sequence[FrozenTrial]) -> dict[int, int]:
    """Configuration -> the number of its first trial that ended (COMPLETE or PRUNED)."""
    out: dict[int, int] = {}
    for trial in every:
        if trial.state in _ENDED:
            config = config_of(trial)
            out[config] = min(out.get(config, trial.number), trial.number)
    return out


def stands_for_config(trial: FrozenTrial, ended: dict[int, int]) -> bool:
    """Is ``trial`` its configuration's trial in the study's counts (``ended``:
    :func:`first_ended`)? A first trial is; a continuation is while no earlier trial of its
    configuration has ended (it continues one interrupted with its state saved), not when it
    continues a configuration that already counted (a promotion)."""
    first = ended.get(config_of(trial))
    return first is None or first >= trial.number


def counted(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Did ``trial``, just ended, finish its configuration in ``study.n_trials``'s count?"""
    return trial.state in _ENDED and stands_for_config(
        trial, first_ended(study.get_trials(deepcopy=False))
    )


def interrupted_state(trial: FrozenTrial) -> dict[str, Any] | None:
    """Where an interrupted trial's training state was saved (``study.resume_trials``):
    {evaluation, step, state}; None for any other trial."""
    mark = trial.user_attrs.get(schema.INTERRUPTED_STATE_ATTR)
    return mark if isinstance(mark, dict) else None


def config_of(trial: optuna.Trial | FrozenTrial) -> int:
    """The configuration a trial trains: the number of its first trial."""
    return int(trial.user_attrs.get(schema.CONFIG_ATTR, trial.number))


def paused_at(trial: FrozenTrial) -> int | None:
    """The evaluation (rung) a paused trial stopped at; None for any other trial."""
    mark = trial.user_attrs.get(schema.PAUSED_ATTR)
    if trial.state != TrialState.PRUNED or not isinstance(mark, dict):
        return None
    return int(mark["evaluation"])


def continuations(every: Sequence[FrozenTrial]) -> dict[int, list[FrozenTrial]]:
    """Paused trial number -> the trials that continue it (retries included), oldest first."""
    out: dict[int, list[FrozenTrial]] = {}
    for trial in every:
        if is_continuation(trial):
            out.setdefault(int(trial.user_attrs[schema.CONTINUES_ATTR]), []).append(trial)
    return out


def paused(study: optuna.Study, every: Sequence[FrozenTrial] | None = None) -> list[FrozenTrial]:
    """Paused trials not continued (nor being continued): the configurations that wait. A
    continuation interrupted with its own state saved has taken the configuration on."""
    every = study.get_trials(deepcopy=False) if every is None else every
    later = continuations(every)
    return [
        t
        for t in every
        if paused_at(t) is not None
        and not any(
            c.state != TrialState.FAIL or interrupted_state(c) is not None
            for c in later.get(t.number, [])
        )
    ]


def pruning_signal(study_cfg: DictConfig) -> tuple[str, float]:
    """What a trial reports to the pruner at each evaluation: (validation metric, the sign that
    puts it in the study's direction). ``study.prune_metric`` (null: the study metric); ``loss``
    is minimized, the other metrics maximized."""
    name = study_cfg.get("prune_metric") or study_cfg.metric
    own = (
        study_cfg.direction
        if name == study_cfg.metric
        else ("minimize" if name == "loss" else "maximize")
    )
    return str(name), 1.0 if own == study_cfg.direction else -1.0


def study_value(trial: FrozenTrial) -> float:
    """A trial's value of the study metric (the first objective)."""
    return float(trial.values[0])


def direction(study: optuna.Study) -> str:
    """The study metric's direction: maximize or minimize."""
    return "maximize" if study.directions[0].name == "MAXIMIZE" else "minimize"


def best_trial(study: optuna.Study) -> FrozenTrial | None:
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


def ranked(study: optuna.Study) -> list[FrozenTrial]:
    """Completed trials, best first on the study metric."""

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    sign = -1 if direction(study) == "maximize" else 1
    return sorted(done, key=lambda t: (sign * study_value(t), t.number))


def best_per_method(study: optuna.Study) -> dict[str, FrozenTrial]:
    """Methods studies: the best completed trial of each method (empty for other studies)."""

    best: dict[str, FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        method = trial.params.get(schema.METHOD_PARAM)
        if method is not None and (
            method not in best
            or is_better(study_value(trial), study_value(best[method]), direction(study))
        ):
            best[method] = trial
    return dict(sorted(best.items()))


def final_study_name(study_name: str) -> str:
    """The companion study that holds a study's final-stage runs."""
    return f"{study_name}{schema.FINAL_STUDY_SUFFIX}"


def is_final(study: optuna.Study) -> bool:
    return study.study_name.endswith(schema.FINAL_STUDY_SUFFIX)


def final_key(trial: optuna.Trial | FrozenTrial) -> tuple[int, int]:
    """A final-stage run's (trial it re-runs, seed)."""
    return int(trial.user_attrs[schema.FINAL_TRIAL_ATTR]), int(
        trial.user_attrs[schema.FINAL_SEED_ATTR]
    )


def failure_reason(trial: FrozenTrial) -> str:
    """Why a failed trial failed, worded the same wherever it is said (the run's error tag, the
    failure limit, the report): the error the trial raised, else why it was interrupted, else
    that Optuna failed it with no reason recorded (its process stopped without a heartbeat, or
    Optuna refused the result it was told)."""
    return str(
        trial.user_attrs.get(schema.ERROR_ATTR)
        or trial.user_attrs.get(schema.INTERRUPTED_ATTR)
        or "no reason recorded: Optuna failed it (its process stopped, or it refused the result)"
    )


def stored_attrs(study: optuna.Study) -> dict[str, Any]:  # Any: user attributes are any JSON
    """The study's user attributes as stored now (another process may have written since
    ``study.user_attrs`` was read)."""
    return study._storage.get_study_user_attrs(study._study_id)


def dropped(study: optuna.Study) -> dict[int, str]:
    """Paused trials whose saved state was removed (over ``checkpoints.paused_gb``) -> why."""
    attrs = stored_attrs(study)
    return {
        int(k.removeprefix(schema.DROPPED_ATTR_PREFIX)): str(v)
        for k, v in attrs.items()
        if k.startswith(schema.DROPPED_ATTR_PREFIX)
    }


def paused_line(study: optuna.Study, counts: dict[str, int]) -> str:
    """The promotion scheduler in a line: continuations, configurations left paused, states
    dropped (empty for a study that paused nothing)."""
    if not counts["paused"] and not counts["continued"]:
        return ""
    gone = dropped(study)
    return (
        f"  Paused and promoted: {counts['continued']} continuation(s) from saved states; "
        f"{counts['paused']} configuration(s) paused at their last rung"
        + (
            f" ({len(gone)} of whose states were removed over checkpoints.paused_gb: trials "
            f"{', '.join(map(str, sorted(gone)))})"
            if gone
            else ""
        )
        + (
            f"; {counts['continuing']} promotion(s) running or queued"
            if counts["continuing"]
            else ""
        )
    )
