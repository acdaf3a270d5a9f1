"""The promotion scheduler on scripted curves (no training): real Optuna storage, the real
pruner, the real queueing under the study lock, a fake objective that reports a curve and
pauses where the pruner says."""

from __future__ import annotations

import multiprocessing
import time

import optuna
import pytest

from harness.records import schema, trials
from harness.study.paused import PausedStates
from harness.study.promotion import PromotionPruner, queue_promotions

TrialState = optuna.trial.TrialState


class Scripted:
    """A single worker running configurations whose validation curves are given: each
    configuration is a queued trial with param ``x`` (its index in ``curves``)."""

    def __init__(
        self, tmp_path, curves, pruner=None, storage=None, max_retries=2, direction="maximize"
    ):
        self.curves = curves
        self.pruner = pruner or PromotionPruner()
        self.states = PausedStates(tmp_path / "out", None)
        self.max_retries = max_retries
        self.study = optuna.create_study(
            storage=storage or f"sqlite:///{tmp_path}/optuna.db",
            study_name="scripted",
            direction=direction,
            pruner=self.pruner,
            load_if_exists=True,
        )
        self.started = 0
        self.kill_next_continuation = False

    def objective(self, trial):
        x = trial.suggest_int("x", 0, len(self.curves) - 1)
        curve = self.curves[x]
        start = 0
        source = trial.user_attrs.get(schema.CONTINUES_ATTR)
        if source is not None:
            paused = self.study.trials[source]
            assert self.states.path(source).is_dir(), "continued from a state that is gone"
            for step, value in sorted(paused.intermediate_values.items()):
                trial.report(value, step)
            start = max(paused.intermediate_values)
            if self.kill_next_continuation:
                self.kill_next_continuation = False
                trial.set_user_attr(schema.INTERRUPTED_ATTR, "interrupted by SIGKILL")
                raise RuntimeError("killed")
        for step in range(start + 1, len(curve) + 1):
            trial.report(curve[step - 1], step)
            if step < len(curve) and trial.should_prune():
                self.states.partial(trial.number).mkdir()
                self.states.commit(trial.number)
                trial.set_user_attr(
                    schema.PAUSED_ATTR, {"evaluation": step, "step": step, "state": "x"}
                )
                raise optuna.TrialPruned()
        return max(curve)

    def step(self) -> bool:
        """What a free worker does once; False when the study is over."""
        counts = trials.count(self.study)
        done = self.started >= len(self.curves)
        queue_promotions(
            self.study,
            self.pruner,
            self.states,
            self.max_retries,
            at_end=done and not counts["running"] and not counts["continuing"],
        )
        if not any(t.state == TrialState.WAITING for t in self.study.trials):
            if done:
                return False
            self.study.enqueue_trial({"x": self.started})
            self.started += 1
        self.study.optimize(self.objective, n_trials=1, catch=(RuntimeError,))
        return True

    def run(self):
        while self.step():
            pass
        return self.study


def configs(study):
    """Configuration (first trial) -> its trials, in order."""
    out = {}
    for t in study.trials:
        out.setdefault(trials.config_of(t), []).append(t)
    return out


def test_rungs_follow_min_resource_and_the_reduction_factor():
    assert [s for s in range(1, 30) if PromotionPruner().is_rung(s)] == [1, 2, 4, 8, 16]
    three = PromotionPruner(min_resource=1, reduction_factor=3)
    assert [s for s in range(1, 30) if three.is_rung(s)] == [1, 3, 9, 27]
    late = PromotionPruner(min_resource=2, reduction_factor=2, min_early_stopping_rate=1)
    assert [s for s in range(1, 30) if late.is_rung(s)] == [4, 8, 16]


@pytest.mark.parametrize(
    "field,value",
    [("reduction_factor", 1), ("min_resource", 0), ("min_complete", -1), ("reduction_factor", 2.5)],
)
def test_bad_settings_are_refused_naming_the_field(field, value):
    from harness.base.errors import ConfigError

    with pytest.raises(ConfigError, match=f"pruner.{field}"):
        PromotionPruner(**{field: value})


def test_a_late_trial_that_beats_an_early_one_at_a_rung_gets_the_promotion(tmp_path):
    """Trial 0 is alone at rung 1: paused, not waved through (Optuna's pruner would let it
    run). Trial 1 beats it there and goes on; trial 0 stays paused, never completed."""
    early = [0.50, 0.52, 0.54, 0.56, 0.58, 0.60, 0.62, 0.64]
    late = [0.70, 0.72, 0.74, 0.76, 0.78, 0.80, 0.82, 0.84]
    runner = Scripted(tmp_path, [early, late], PromotionPruner(min_complete=1))
    runner.step()
    zero = runner.study.trials[0]
    assert zero.state == TrialState.PRUNED and trials.paused_at(zero) == 1
    runner.step()
    one = runner.study.trials[1]
    # in the top half of two at rung 1: on to rung 2, where it is alone: paused there
    assert trials.paused_at(one) == 2 and sorted(one.intermediate_values) == [1, 2]
    study = runner.run()
    groups = configs(study)
    assert [t.state for t in groups[0]] == [TrialState.PRUNED]  # the early one: never again
    assert trials.paused_at(groups[0][0]) == 1
    finished = [t for t in groups[1] if t.state == TrialState.COMPLETE]
    assert len(finished) == 1 and finished[0].value == pytest.approx(0.84)
    assert finished[0].user_attrs[schema.CONTINUES_ATTR] == 1
    # the continuation reported the earlier evaluations, then its own: one curve
    assert finished[0].intermediate_values == dict(enumerate(late, 1))


def test_each_rung_keeps_the_top_half_and_the_study_ends_with_min_complete(tmp_path):
    """Eight configurations, ranked by a constant offset: successive halving's shape (8 at
    rung 1, 4 at 2, 2 at 4, 1 at 8), whatever the order they arrive in, and two complete."""
    order = [3, 7, 0, 5, 1, 6, 2, 4]  # quality ranks, best 7
    curves = [[0.1 * q + 0.001 * s for s in range(1, 13)] for q in order]
    study = Scripted(tmp_path, curves).run()
    reached = {
        rung: sum(
            1 for trs in configs(study).values() if any(rung in t.intermediate_values for t in trs)
        )
        for rung in (1, 2, 4, 8, 12)
    }
    assert reached[1] == 8 and reached[2] == 4 and reached[4] == 2
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len({trials.config_of(t) for t in complete}) == 2  # min_complete
    best = max(complete, key=lambda t: t.value)
    assert study.trials[trials.config_of(best)].params["x"] == order.index(7)
    # every paused trial was continued at most once, and nothing is left queued or running
    continued = trials.continuations(study.trials)
    assert all(len(runs) == 1 for runs in continued.values())
    assert not [t for t in study.trials if t.state in (TrialState.WAITING, TrialState.RUNNING)]


def test_minimize_ranks_the_lowest_first(tmp_path):
    curves = [[1.0 - 0.01 * s for s in range(1, 9)], [0.5 - 0.01 * s for s in range(1, 9)]]
    study = Scripted(tmp_path, curves, PromotionPruner(min_complete=1), direction="minimize").run()
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert [study.trials[trials.config_of(t)].params["x"] for t in complete] == [1]


def test_a_killed_promotion_is_queued_again_from_the_same_state(tmp_path):
    curves = [[0.5 + 0.01 * s for s in range(1, 9)], [0.7 + 0.01 * s for s in range(1, 9)]]
    runner = Scripted(tmp_path, curves, PromotionPruner(min_complete=1))
    runner.step()  # trial 0 paused at rung 1
    runner.step()  # trial 1 goes on, pauses at rung 2
    runner.kill_next_continuation = True
    study = runner.run()
    killed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(killed) == 1
    source = killed[0].user_attrs[schema.CONTINUES_ATTR]
    retries = [
        t
        for t in study.trials
        if t.user_attrs.get(schema.CONTINUES_ATTR) == source and t.state != TrialState.FAIL
    ]
    assert len(retries) == 1 and retries[0].number > killed[0].number
    assert retries[0].intermediate_values[1] == study.trials[source].intermediate_values[1]


def test_a_promotion_that_failed_for_a_reason_is_not_retried(tmp_path):
    runner = Scripted(tmp_path, [[0.5] * 8, [0.7] * 8], PromotionPruner(min_complete=1))
    runner.step()
    runner.step()
    study = runner.study
    paused = next(t for t in study.trials if trials.paused_at(t) == 2)
    study.enqueue_trial(
        paused.params, user_attrs={schema.CONTINUES_ATTR: paused.number, schema.CONFIG_ATTR: 1}
    )
    trial = study.ask()
    trial.set_user_attr(schema.ERROR_ATTR, "ValueError: broken")
    study.tell(trial, state=TrialState.FAIL)
    assert all(
        t.number != paused.number for t, _ in runner.pruner.due(study, runner.states, max_retries=2)
    )


def test_states_over_the_budget_are_dropped_oldest_first_and_recorded(tmp_path):
    curves = [[0.1 * (i + 1)] * 8 for i in range(4)]
    runner = Scripted(tmp_path, curves, PromotionPruner(min_complete=0))
    for _ in range(4):
        runner.step()
    study, states = runner.study, runner.states
    for number in states.numbers():  # make each state 1 MB
        (states.path(number) / "weights").write_bytes(b"0" * 2**20)
    kept = states.numbers()
    assert len(kept) >= 2
    budgeted = PausedStates(states.root, max_gb=(len(kept) - 1.5) / 1024)
    dropped = budgeted.tidy(study, protect={kept[-1]})
    oldest = sorted(kept[:-1], key=lambda n: study.trials[n].datetime_complete)
    assert dropped == oldest[:2] if len(kept) > 2 else dropped == oldest[:1]
    assert set(trials.dropped(study)) == set(dropped)
    assert all(not states.path(n).exists() for n in dropped)
    assert all(t.number not in dropped for t, _ in runner.pruner.due(study, budgeted, 2))


def _race(url: str, tmp: str, barrier, results) -> None:
    from pathlib import Path

    study = optuna.load_study(
        study_name="scripted", storage=url, pruner=PromotionPruner(min_complete=1)
    )
    barrier.wait()
    queued = queue_promotions(study, study.pruner, PausedStates(Path(tmp) / "out", None), 2)
    trial = study.ask()  # the queued promotion, or a new configuration
    results.put((queued, trial.user_attrs.get(schema.CONTINUES_ATTR), trial.number))


def race(url: str, tmp_path) -> list[tuple]:
    """Two processes find one promotion due at the same moment."""
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    workers = [
        ctx.Process(target=_race, args=(url, str(tmp_path), barrier, results)) for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    return [results.get(timeout=5) for _ in workers]


def one_promotion_due(tmp_path, storage=None):
    """Config 0 paused at rung 1, config 1 paused at rung 1 below it: config 0 is due."""
    runner = Scripted(
        tmp_path, [[0.9] * 8, [0.1] * 8], PromotionPruner(min_complete=1), storage=storage
    )
    runner.study.enqueue_trial({"x": 0})
    runner.study.optimize(runner.objective, n_trials=1)
    runner.study.enqueue_trial({"x": 1})
    runner.study.optimize(runner.objective, n_trials=1)
    assert [t.number for t, _ in runner.pruner.due(runner.study, runner.states, 2)] == [0]
    return runner


def check_one_wins(outcome, study):
    assert sorted(q for q, _, _ in outcome) == [0, 1]  # queued once, by one of the two
    assert sorted(str(c) for _, c, _ in outcome) == ["0", "None"]  # one took it, one new work
    continuations = [t for t in study.get_trials() if trials.is_continuation(t)]
    assert len(continuations) == 1


def test_two_workers_racing_for_one_promotion_one_wins_the_other_takes_new_work(tmp_path):
    for attempt in range(3):  # the race is a race: run it a few times
        folder = tmp_path / f"race-{attempt}"
        folder.mkdir()
        runner = one_promotion_due(folder)
        check_one_wins(race(f"sqlite:///{folder}/optuna.db", folder), runner.study)


@pytest.mark.integration
def test_two_workers_racing_on_postgresql(tmp_path, postgres_database):
    from tests.conftest import PG_URL

    url = PG_URL.rsplit("/", 1)[0] + "/" + postgres_database("promotion")
    url = url.replace("postgresql://", "postgresql+psycopg://")
    runner = one_promotion_due(tmp_path, storage=url)
    check_one_wins(race(url, tmp_path), runner.study)


def test_the_lock_serialises_holders(tmp_path):
    """Two processes holding the study lock never overlap."""
    ctx = multiprocessing.get_context("fork")
    url = f"sqlite:///{tmp_path}/optuna.db"
    optuna.create_study(storage=url, study_name="scripted")
    spans = ctx.Queue()

    def hold():
        from harness.study.lock import study_lock

        study = optuna.load_study(study_name="scripted", storage=url)
        with study_lock(study._storage, "scripted", "promotion"):
            start = time.monotonic()
            time.sleep(0.5)
            spans.put((start, time.monotonic()))

    workers = [ctx.Process(target=hold) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    (a0, a1), (b0, b1) = sorted(spans.get(timeout=5) for _ in workers)
    assert b0 >= a1


def test_ties_at_a_rung_are_not_broken_by_age(tmp_path):
    """Eight configurations that all sit at the same value (the majority class, say): who goes
    on is not who came first."""
    study = Scripted(tmp_path, [[0.5] * 8 for _ in range(8)], PromotionPruner(min_complete=0)).run()
    groups = configs(study)
    went_on = sorted(
        config for config, runs in groups.items() if any(2 in t.intermediate_values for t in runs)
    )
    assert len(went_on) >= 4 and went_on != sorted(groups)[:4], went_on
