"""The promotion scheduler (``pruner=promotion``): trials below the cut at a rung are paused with
their full training state, and promoted later, from their weights, when enough trials have
reached the rung to rank them (asynchronous successive halving, Li et al. 2020, as Ray Tune's
and Syne Tune's ``type="promotion"`` schedulers do; Optuna cannot pause a trial, optuna#3351).

Rungs are evaluations ``min_resource * reduction_factor ** (k + min_early_stopping_rate)``.
At a rung a *configuration* (a trial and the trials that continue it) ranks by the value it
reported there among every configuration that reached the rung; the top
``floor(n / reduction_factor)`` of those ``n`` go on. A trial alone at a rung is therefore
paused, never waved through: the first trials of a study get no head start.

Records (Optuna is the record; MLflow a view of it):

- a paused trial is PRUNED with ``harness.paused`` = {evaluation, step, state}; its state
  (:mod:`harness.study.paused`) holds weights or adapter, optimizer, scheduler, RNG, step and
  curve so far;
- a promotion is a new trial, queued with the same params and ``harness.continues`` = the
  paused trial's number (``harness.config``: the configuration's first trial). It reports the
  earlier evaluations first, so that rungs compare like with like, then trains on from the
  state; its MLflow run starts with the earlier run's curves, so it reads as one curve;
- ``study.n_trials`` counts configurations; continuations do not add to it.

Which promotions are due is decided under a lock that every worker shares
(:mod:`harness.study.lock`) and queued there, so a promotion is queued once; Optuna hands a
queued trial to exactly one worker. A continuation that was killed is queued again from the
same state (``study.max_retries`` times), whatever the ranking says by then.

At the end of a study (every configuration started, nothing running or due) the best paused
configurations are trained to the full budget until ``min_complete`` configurations have it
(the best at the highest rung first): a study always ends with models to compare and choose.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from harness.base.errors import ConfigError
from harness.records import schema, trials
from harness.study.lock import study_lock
from harness.study.paused import PausedStates

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

log = logging.getLogger(__name__)
LIVE = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)


class PromotionPruner(optuna.pruners.BasePruner):
    """Pauses a trial at a rung unless its configuration ranks in the top
    ``1 / reduction_factor`` of those that reached it (see the module)."""

    def __init__(
        self,
        min_resource: int = 1,
        reduction_factor: int = 2,
        min_early_stopping_rate: int = 0,
        min_complete: int = 2,
    ) -> None:
        for name, value, low in (
            ("min_resource", min_resource, 1),
            ("reduction_factor", reduction_factor, 2),
            ("min_early_stopping_rate", min_early_stopping_rate, 0),
            ("min_complete", min_complete, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"pruner.{name}", f"must be an integer >= {low}, got {value!r}")
        self.min_resource = min_resource
        self.reduction_factor = reduction_factor
        self.min_early_stopping_rate = min_early_stopping_rate
        self.min_complete = min_complete

    # ------------------------------------------------------------------ rungs

    def is_rung(self, step: int) -> bool:
        """Is evaluation ``step`` a rung?"""
        return step in self.rungs(step)

    def rungs(self, up_to: int = 1 << 16) -> frozenset[int]:
        """The rungs (evaluation indexes) up to evaluation ``up_to``."""
        rung: int = self.min_resource * self.reduction_factor**self.min_early_stopping_rate
        found = set()
        while rung <= up_to:
            found.add(rung)
            rung *= self.reduction_factor
        return frozenset(found)

    def ranking(self, study: optuna.Study, every: list[FrozenTrial], step: int) -> list[int]:
        """The configurations that reached evaluation ``step``, best first. Ties (trials still
        at the majority class, say) are broken in a fixed pseudo-random order, not by age: the
        older trial of a tie has no claim to the promotion."""
        values: dict[int, float] = {}
        for trial in every:
            if trial.state == TrialState.FAIL or step not in trial.intermediate_values:
                continue
            values.setdefault(trials.config_of(trial), trial.intermediate_values[step])
        sign = -1.0 if trials.direction(study) == "maximize" else 1.0
        return sorted(values, key=lambda config: (sign * values[config], _shuffled(config, step)))

    def promoted_count(self, reached: int) -> int:
        """How many of ``reached`` configurations at a rung go on."""
        return reached // self.reduction_factor

    def in_top(self, study: optuna.Study, every: list[FrozenTrial], config: int, step: int) -> bool:
        ranking = self.ranking(study, every, step)
        return config in ranking[: self.promoted_count(len(ranking))]

    # ------------------------------------------------------------------ Optuna's pruner API

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """At a rung: pause unless in the top; a trial promoted to the end never pauses."""
        step = trial.last_step
        if step is None or trial.user_attrs.get(schema.TO_END_ATTR) or not self.is_rung(step):
            return False
        every = study.get_trials(deepcopy=False)
        return not self.in_top(study, every, trials.config_of(trial), step)

    # ------------------------------------------------------------------ promotions

    def due(
        self, study: optuna.Study, states: PausedStates, max_retries: int | None
    ) -> list[tuple[FrozenTrial, bool]]:
        """Paused trials to continue now, highest rung first, each with whether it trains to
        the end: those now in the top at their rung, and those whose continuation was killed
        (queued again from the same state)."""
        every = study.get_trials(deepcopy=False)
        later = trials.continuations(every)
        gone = trials.dropped(study)
        out = []
        for trial in every:
            rung = trials.paused_at(trial)
            if rung is None:
                continue
            attempts = later.get(trial.number, [])
            if any(a.state in LIVE for a in attempts):
                continue  # taken
            if trial.number in gone or not states.path(trial.number).is_dir():
                continue
            if attempts:  # promoted before; every attempt failed
                last = attempts[-1]
                if trials.interrupted_state(last) is not None:
                    continue  # it saved a later state: continued from there (study.recovery)
                interrupted = schema.INTERRUPTED_ATTR in last.user_attrs
                if interrupted and (max_retries is None or len(attempts) <= max_retries):
                    out.append((trial, bool(last.user_attrs.get(schema.TO_END_ATTR))))
                continue
            if self.in_top(study, every, trials.config_of(trial), rung):
                out.append((trial, False))
        return sorted(out, key=lambda item: (-(trials.paused_at(item[0]) or 0), item[0].number))

    def to_finish(self, study: optuna.Study, states: PausedStates) -> FrozenTrial | None:
        """At the study's end, while fewer than ``min_complete`` configurations reached the
        full budget: the paused trial to train to the end (the best at the highest rung;
        None when none is left)."""
        every = study.get_trials(deepcopy=False)
        complete = {trials.config_of(t) for t in every if t.state == TrialState.COMPLETE}
        if len(complete) >= self.min_complete:
            return None
        later = trials.continuations(every)
        gone = trials.dropped(study)
        candidates = [
            t
            for t in every
            if trials.paused_at(t) is not None
            and not later.get(t.number)
            and t.number not in gone
            and states.path(t.number).is_dir()
        ]
        if not candidates:
            return None
        top = max(trials.paused_at(t) or 0 for t in candidates)
        ranking = self.ranking(study, every, top)
        at_top = {trials.config_of(t): t for t in candidates if trials.paused_at(t) == top}
        return next(at_top[c] for c in ranking if c in at_top)


def _shuffled(config: int, step: int) -> int:
    """A fixed pseudo-random rank of a configuration at a rung (the same in every worker)."""
    return int.from_bytes(hashlib.sha256(f"{config}:{step}".encode()).digest()[:8], "big")


def queue_promotions(
    study: optuna.Study,
    pruner: PromotionPruner,
    states: PausedStates,
    max_retries: int | None,
    at_end: bool = False,
) -> int:
    """Queue the promotions that are due (``at_end``: when none is and nothing runs or waits,
    the next configuration to train to the full budget), keep the paused states within their
    budget; all under the study's promotion lock. Returns how many were queued."""
    with study_lock(study._storage, study.study_name, "promotion"):
        due = pruner.due(study, states, max_retries)
        if not due and at_end and not _anything_live(study):
            chosen = pruner.to_finish(study, states)
            due = [(chosen, True)] if chosen is not None else []
        for trial, to_end in due:
            attrs: dict[str, Any] = {
                schema.CONTINUES_ATTR: trial.number,
                schema.CONFIG_ATTR: trials.config_of(trial),
            }
            if to_end:
                attrs[schema.TO_END_ATTR] = True
            if schema.ENQUEUED_ATTR in trial.user_attrs:  # the recipe stays the recipe
                attrs[schema.ENQUEUED_ATTR] = trial.user_attrs[schema.ENQUEUED_ATTR]
            study.enqueue_trial(dict(trial.params), user_attrs=attrs)
            log.info(
                "trial %d (paused at evaluation %d) promoted%s: it continues from its saved state",
                trial.number,
                trials.paused_at(trial) or 0,
                " to the full budget (the study's end)" if to_end else "",
            )
        states.tidy(study, protect={t.number for t, _ in due})
    return len(due)


def _anything_live(study: optuna.Study) -> bool:
    """A trial running, or a promotion queued (a configuration queued beyond study.n_trials
    waits for a later run: it does not count)."""
    return any(
        t.state == TrialState.RUNNING
        or (t.state == TrialState.WAITING and trials.is_continuation(t))
        for t in study.get_trials(deepcopy=False)
    )
