"""Sweeps with the promotion scheduler on the tiny BERT: paused trials continue from their
saved states, the records agree, curves read as one, and a kill -9 during a promotion or while
a state is written loses nothing."""

from __future__ import annotations

import signal
from pathlib import Path

import optuna
import pytest
from hydra.utils import instantiate

from harness.records import schema, trials
from harness.records.compute import study_compute
from harness.study import run_sweep
from tests.helpers.configs import compose
from tests.helpers.sweeps import RUN_STATUS, SweepProcess, stores

pytestmark = pytest.mark.integration  # promotion sweeps of the tiny BERT, kill -9

TrialState = optuna.trial.TrialState


@pytest.fixture
def promotion_overrides(sweep_overrides):
    return [
        *[o for o in sweep_overrides if o != "pruner=median"],
        "pruner=promotion",
        "study.n_trials=5",
        "study.heartbeat_interval=1",
        "study.grace_period=2",
        "report.enabled=false",
    ]


def check_records(overrides, n_configs: int):
    """The study as it must be after a finished run: Optuna and MLflow agree trial by trial,
    every configuration counted once, each paused trial continued at most once, the curves of
    continuations whole, steps counted once, paused states on disk only where they wait."""
    cfg, study, client, parent, children = stores(overrides)
    every = study.trials
    assert not [t for t in every if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert trials.count(study)["finished"] == n_configs
    assert sorted(children) == [t.number for t in every]
    for trial in every:
        run = children[trial.number]
        assert run.data.tags[schema.STATE_TAG] == trial.state.name, trial.number
        assert run.info.status in RUN_STATUS[trial.state], (trial.number, run.info.status)
        if trials.paused_at(trial) is not None:
            assert schema.PAUSED_TAG in run.data.tags
    later = trials.continuations(every)
    for source, attempts in later.items():
        assert len([a for a in attempts if a.state != TrialState.FAIL]) <= 1, source
    curves = {
        trial.number: sorted(
            m.step
            for m in client.get_metric_history(children[trial.number].info.run_id, "val_accuracy")
        )
        for trial in every
        if trial.state != TrialState.FAIL
    }
    eval_steps = min(steps[0] for steps in curves.values())  # evaluation 1: a rung, always run
    index = {n: [-(-step // eval_steps) for step in steps] for n, steps in curves.items()}
    total = max(ks[-1] for ks in index.values())  # the budget's last evaluation
    rungs = instantiate(cfg.pruner).rungs(total)
    for number, ks in index.items():
        assert len(ks) == len(set(ks)), f"trial {number}: a step twice"
        # the rungs and every evaluation from train.evaluate_from on, none twice, no gap
        scheduled = [
            k
            for k in range(1, ks[-1] + 1)
            if k in rungs or k >= cfg.train.evaluate_from * total - 1e-9
        ]
        assert ks == scheduled, number
        assert ks == sorted(study.trials[number].intermediate_values), number
    complete = {trials.config_of(t) for t in every if t.state == TrialState.COMPLETE}
    assert len(complete) >= 2  # pruner.min_complete
    # steps: each configuration's furthest global step, counted once over its trials
    furthest: dict[int, int] = {}
    for trial in every:
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            reached = (trial.user_attrs.get(schema.PAUSED_ATTR) or {}).get("step") or (
                trial.user_attrs[schema.COMPUTE_ATTR]["steps_planned"]
                + (
                    0
                    if not trials.is_continuation(trial)
                    else (
                        study.trials[trial.user_attrs[schema.CONTINUES_ATTR]].user_attrs[
                            schema.PAUSED_ATTR
                        ]["step"]
                    )
                )
            )
            furthest[trials.config_of(trial)] = max(
                furthest.get(trials.config_of(trial), 0), reached
            )
    assert study_compute(study).totals["steps_trained"] == sum(furthest.values())
    states = sorted(p.name for p in (Path(cfg.study.output_dir) / "paused").glob("trial-*"))
    assert states == sorted(f"trial-{t.number}" for t in trials.paused(study))
    return cfg, study, client, children


def test_a_promotion_sweep_continues_paused_trials_from_their_state(promotion_overrides):
    summary = run_sweep(compose(promotion_overrides))
    cfg, study, client, children = check_records(promotion_overrides, 5)
    assert summary.complete >= 2 and summary.complete + summary.pruned == 5
    assert "Paused and promoted:" in summary.format()
    continued = [t for t in study.trials if trials.is_continuation(t)]
    assert continued
    for trial in continued:
        source = study.trials[trial.user_attrs[schema.CONTINUES_ATTR]]
        assert trial.params == source.params
        for step, value in source.intermediate_values.items():  # reported again, as it was
            assert trial.intermediate_values[step] == value
        tags = children[trial.number].data.tags
        assert tags[schema.CONTINUES_TAG].startswith(f"trial {source.number} ")
        assert (
            children[source.number]
            .data.tags[schema.CONTINUED_BY_TAG]
            .startswith(f"trial {trial.number} ")
        )
    # the first trial met no competition at rung 1: paused there, not waved through
    assert trials.paused_at(study.trials[0]) == 1


@pytest.mark.slow  # two sweeps in subprocesses each (~1 min on 2 cores)
@pytest.mark.parametrize("fault", ["promotion", "pause_state"])
def test_kill_9_during_a_promotion_or_a_state_save_then_resume(promotion_overrides, fault):
    overrides = [*promotion_overrides, "study.n_trials=4"]
    sweep = SweepProcess(overrides, faults=f"{fault}=pause")
    sweep.wait_for(f"harness fault: {fault} reached")
    sweep.signal(signal.SIGKILL)
    assert sweep.wait() == -signal.SIGKILL
    _, study, *_ = stores(overrides)
    killed = next(t for t in study.trials if t.state == TrialState.RUNNING)
    resumed = SweepProcess(overrides)
    assert resumed.wait(timeout=400) == 0, resumed.err
    cfg, study, client, children = check_records(overrides, 4)
    killed = study.trials[killed.number]
    assert killed.state == TrialState.FAIL and schema.INTERRUPTED_ATTR in killed.user_attrs
    assert children[killed.number].info.status == "FAILED"
    if fault == "promotion":  # continued again from the same state, once
        source = killed.user_attrs[schema.CONTINUES_ATTR]
        retries = [
            t
            for t in study.trials
            if t.user_attrs.get(schema.CONTINUES_ATTR) == source and t.state != TrialState.FAIL
        ]
        assert len(retries) == 1
    else:  # the half-written state is gone; the configuration ran again as a new trial
        assert not (Path(cfg.study.output_dir) / ".partial" / f"paused-{killed.number}").exists()
        retried = [
            t
            for t in study.trials
            if t.number > killed.number
            and t.params == killed.params
            and not trials.is_continuation(t)
        ]
        assert retried
