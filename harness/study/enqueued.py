"""Trials queued before the sampler's own: the sweep's ``recipe``, ``study.enqueue`` and
``study.warm_start``.

:func:`planned` reads them and checks them against the study's space before anything is
created (a recipe or a set given by hand that does not fit is refused, naming the param; a warm
start's trials that do not fit are skipped). :func:`enqueue` queues them once the study exists,
each marked (``harness.enqueued``: ``recipe``, ``manual`` or ``warm_start:<study>#<trial>``, on
the trial and on its MLflow run).

The recipe (the values a careful user would train without a search) is queued only into a new
study, as its first trial, and recorded with the study (``harness.recipe``): the final stage
trains it again with the chosen configuration's seeds, to measure what the search gained. A
study made before recipes existed, or with ``recipe: null``, has none.

Each set is queued once: Optuna's ``skip_if_exists`` skips a set the study already has (queued,
run or retried), and the study records the warm start it queued (``harness.warm_start``), so a
resume queues nothing again even when the other study has better trials by then. With several
workers only worker 0 (or a lone process) queues: two at once could both find a set missing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

import optuna
from omegaconf import DictConfig, ListConfig, OmegaConf

from harness.base.errors import ConfigError
from harness.base.files import storage_file
from harness.base.secrets import mask
from harness.base.storages import load_study
from harness.records import schema
from harness.space import MethodSpace, SearchSpace, fit_params

if TYPE_CHECKING:
    from optuna.distributions import CategoricalChoiceType

log = logging.getLogger(__name__)
State = optuna.trial.TrialState
MANUAL = "manual"
Params = dict[str, "CategoricalChoiceType"]  # a configuration's params, as Optuna takes them
Planned = tuple[Params, str]  # a parameter set to queue, with its mark
Space = SearchSpace | MethodSpace


def planned(cfg: DictConfig, space: Space) -> list[Planned]:
    """The parameter sets to queue, in order, each with its mark (see the module)."""
    seeds: list[Planned] = []
    own = recipe(cfg, space)
    if own is not None:
        seeds.append((own, schema.RECIPE_MARK))
    given = cfg.study.get("enqueue")
    sets = (  # a list of parameter sets (the study schema's)
        cast("list[Any]", OmegaConf.to_container(given, resolve=True)) if given is not None else []
    )
    for i, params in enumerate(sets):
        try:
            seeds.append((fit_params(space, params), MANUAL))
        except ConfigError as exc:
            where = "" if exc.field == "params" else f".{exc.field}"
            raise ConfigError(f"study.enqueue[{i}]{where}", exc.message) from None
    return seeds + _warm_start(cfg, space)


def recipe(cfg: DictConfig, space: Space) -> Params | None:
    """The sweep's recipe checked against the space: one complete configuration (every
    searched param has a value inside its range), or None without one."""
    given = cfg.get("recipe")
    if given is None:
        return None
    values = (
        OmegaConf.to_container(given, resolve=True)
        if isinstance(given, DictConfig | ListConfig)
        else given
    )
    if not isinstance(values, dict) or not values:
        raise ConfigError("recipe", f"must map param names to values (or be null), got {given!r}")
    try:
        fitted = fit_params(space, cast("dict[str, object]", values))  # JSON: names to values
    except ConfigError as exc:
        raise ConfigError(
            f"recipe.{exc.field}" if exc.field != "params" else "recipe", exc.message
        ) from None
    method = fitted.get(schema.METHOD_PARAM)
    needed = searched_names(space, None if method is None else str(method))
    missing = [name for name in needed if name not in fitted]
    if missing:
        raise ConfigError(
            "recipe",
            f"gives no value for {missing[0]}: a recipe is one "
            "configuration, so every searched param needs one",
        )
    return fitted


def searched_names(space: Space, method: str | None) -> list[str]:
    """The names of the params a trial samples (a methods study: those of ``method``)."""
    if isinstance(space, MethodSpace):
        shared = [p.path for p in (space.shared or []) if p.searched]
        if method is None:
            return [MethodSpace.PARAM, *shared]
        own = [f"{method}/{p.path}" for p in space.per_method[method] if p.searched]
        return [MethodSpace.PARAM, *shared, *own]
    return [p.path for p in space if p.searched]


def check_recipe(existing: optuna.Study | None, own: Params | None) -> None:
    """On resume: the recipe is the one the study was made with (a study made before recipes,
    or without one, keeps having none)."""
    if existing is None:
        return
    recorded = existing.user_attrs.get(schema.RECIPE_ATTR)
    if recorded is not None and recorded != own:
        raise ConfigError(
            "recipe",
            f"study '{existing.study_name}' was made with the recipe "
            f"{recorded}: resume it with that recipe, or start a new "
            "study with study.name=NEW_NAME",
        )


def enqueue(study: optuna.Study, cfg: DictConfig, seeds: list[Planned]) -> int:
    """Queue ``seeds`` on ``study`` (worker 0 or a lone process); the number queued."""
    if cfg.study.get("worker") not in (None, 0) or not seeds:
        return 0
    warm = warm_start_record(cfg)
    done = study.user_attrs.get(schema.WARM_START_ATTR)
    before = len(study.get_trials(deepcopy=False))
    fresh = not any(t.state.is_finished() for t in study.get_trials(deepcopy=False))
    for params, mark in seeds:
        if mark == schema.RECIPE_MARK:  # a new study's first trial, and only then
            if fresh and schema.RECIPE_ATTR not in study.user_attrs:
                study.enqueue_trial(params, user_attrs={schema.ENQUEUED_ATTR: mark})
                study.set_user_attr(schema.RECIPE_ATTR, params)
            continue
        if mark != MANUAL and done == warm:
            continue  # queued by an earlier run
        study.enqueue_trial(params, user_attrs={schema.ENQUEUED_ATTR: mark}, skip_if_exists=True)
    if warm is not None and done != warm:
        study.set_user_attr(schema.WARM_START_ATTR, warm)
    queued = len(study.get_trials(deepcopy=False)) - before
    if queued:
        log.info(
            "queued %d trial(s) to run first (the recipe, study.enqueue, study.warm_start)", queued
        )
    states = [t.state for t in study.get_trials(deepcopy=False)]
    waiting, finished = (
        states.count(State.WAITING),
        states.count(State.COMPLETE) + states.count(State.PRUNED),
    )
    if waiting > int(cfg.study.n_trials) - finished:
        log.warning(
            "%d queued trial(s) but %d to go (study.n_trials): the others wait for a "
            "later run with a higher study.n_trials",
            waiting,
            max(0, int(cfg.study.n_trials) - finished),
        )
    return queued


def warm_start_record(cfg: DictConfig) -> dict[str, str | int] | None:
    """What the study records of its warm start (None without one)."""
    warm = cfg.study.warm_start
    if not warm.get("name"):
        return None
    return {"name": str(warm.name), "storage": mask(_source_url(cfg)), "top_k": int(warm.top_k)}


def _source_url(cfg: DictConfig) -> str:
    return str(cfg.study.warm_start.get("storage") or cfg.study.storage)


def _warm_start(cfg: DictConfig, space: Space) -> list[Planned]:
    """The other study's best complete trials that fit this space, best first, top_k of them."""
    warm = cfg.study.warm_start
    if not warm.get("name"):
        return []
    name, url = str(warm.name), _source_url(cfg)
    if name == str(cfg.study.name) and url == str(cfg.study.storage):
        raise ConfigError("study.warm_start.name", f"'{name}' is this study: name another one")
    path = storage_file(url)
    if path is not None and not path.is_file():
        raise ConfigError(
            "study.warm_start.storage" if warm.get("storage") else "study.warm_start.name",
            mask(f"no study '{name}': '{url}' does not exist"),
        )
    try:
        source = load_study(url, name)
    except KeyError:
        raise ConfigError("study.warm_start.name", mask(f"no study '{name}' in '{url}'")) from None
    except Exception as exc:
        raise ConfigError(
            "study.warm_start.storage", mask(f"cannot open '{url}': {str(exc).splitlines()[0]}")
        ) from None
    sign = -1 if source.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1
    complete = source.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    seeds: list[Planned] = []
    for trial in sorted(complete, key=lambda t: (sign * t.values[0], t.number)):
        try:
            params = fit_params(space, trial.params)
        except ConfigError as exc:
            log.info("warm start: trial %d of '%s' skipped (%s)", trial.number, name, exc)
            continue
        if params:
            seeds.append((params, f"warm_start:{name}#{trial.number}"))
        if len(seeds) == int(warm.top_k):
            break
    return seeds
