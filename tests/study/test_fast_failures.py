"""Failing, interrupted and stale trials on the scripted fake fine-tune, against real Optuna
storage and a real MLflow store: each failure recorded on both sides, the failure limit,
an interruption recorded then resumed, a trial left RUNNING failed and retried.

The real fine-tune's path: an exception, out of memory and a NaN loss in
``tests/study/test_failures.py``, signals and kill -9 in ``test_crash_safety.py`` (a sweep in a
subprocess), a trial left running without a heartbeat in ``test_crash_safety.py`` (slow).
"""

from __future__ import annotations

import threading
from pathlib import Path

import optuna
import pytest

from harness.base.errors import StudyStopped
from harness.records import schema
from harness.study import run_sweep
from tests.helpers.fake_finetune import FakeFineTune, raise_at
from tests.helpers.sweeps import assert_consistent, stores

TrialState = optuna.trial.TrialState


def test_an_error_a_nan_loss_and_out_of_memory_fail_their_trial_and_the_study_goes_on(
    fast_overrides, monkeypatch, compose
):
    monkeypatch.setenv("HARNESS_FAULTS", "train_step:1:2=nan,train_step:3:5=oom")
    fake = FakeFineTune()  # trial 4 (its fifth fine-tune) raises at step 7
    fake.on_step = raise_at(7, RuntimeError("scripted"), lambda cfg: fake.started == 5)
    overrides = [*fast_overrides, "study.n_trials=3", "pruner=none", "train.num_train_epochs=2"]
    summary = run_sweep(compose(overrides), finetune=fake)
    _, study, client, _, children = assert_consistent(overrides, n_trials=3)
    assert [t.state for t in study.trials] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.FAIL,
        TrialState.COMPLETE,
    ]
    assert (summary.complete, summary.failed) == (3, 3)
    nan, oom, scripted = study.trials[1], study.trials[3], study.trials[4]
    assert nan.user_attrs[schema.ERROR_ATTR].startswith(
        "NonFiniteLoss: training loss became nan at step 2 "
    )
    assert oom.user_attrs[schema.ERROR_ATTR].startswith("OutOfMemoryError: injected out of memory")
    assert scripted.user_attrs[schema.ERROR_ATTR] == "RuntimeError: scripted"
    for trial, kind in (
        (nan, "NonFiniteLoss"),
        (oom, "OutOfMemoryError"),
        (scripted, "RuntimeError"),
    ):
        run = children[trial.number]
        assert run.info.status == "FAILED" and run.data.tags["error_type"] == kind
        assert run.data.tags[schema.ERROR_TAG] == trial.user_attrs[schema.ERROR_ATTR]
        traceback = client.download_artifacts(run.info.run_id, schema.TRACEBACK_ARTIFACT)
        assert "Traceback (most recent call last)" in Path(traceback).read_text()
        assert not trial.intermediate_values  # it never reached an evaluation
        assert schema.CHECKPOINT_ARTIFACT not in {
            a.path for a in client.list_artifacts(run.info.run_id)
        }
        # what it spent before it failed is recorded too
        assert (
            run.data.metrics["steps_trained"]
            == trial.user_attrs[schema.COMPUTE_ATTR]["steps_trained"]
        )


def test_a_broken_study_stops_at_the_failure_limit_with_a_clear_message(fast_overrides, compose):
    fake = FakeFineTune(on_step=raise_at(1, ValueError("the scripted break")))
    overrides = [*fast_overrides, "study.n_trials=5", "pruner=none"]
    with pytest.raises(StudyStopped) as stopped:
        run_sweep(compose(overrides), finetune=fake)
    message = str(stopped.value)
    assert "3 trials in a row failed (study.failure_limit.consecutive=3)" in message
    assert "every one with ValueError: the scripted break" in message
    _, study, _, parent, children = stores(overrides)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 3  # then it stopped
    for run in children.values():
        assert run.info.status == "FAILED" and run.data.tags[schema.STATE_TAG] == "FAIL"
    assert parent.info.status == "FAILED"
    assert "0 complete, 0 pruned, 3 failed" in stopped.value.summary.format()


def test_an_interrupted_trial_is_recorded_and_the_same_command_resumes(fast_overrides, compose):
    """Ctrl-C (a KeyboardInterrupt) in trial 1's training: the trial FAIL as interrupted, its
    run KILLED, the sweep stops; the same command retries it and reaches the total."""
    fake = FakeFineTune()
    fake.on_step = raise_at(5, KeyboardInterrupt(), lambda cfg: fake.started == 2)
    overrides = [*fast_overrides, "study.n_trials=3", "pruner=none"]
    with pytest.raises(KeyboardInterrupt):
        run_sweep(compose(overrides), finetune=fake)
    _, study, _, parent, children = stores(overrides)
    interrupted = study.trials[1]
    assert interrupted.state == TrialState.FAIL
    assert interrupted.user_attrs[schema.INTERRUPTED_ATTR] == "interrupted by KeyboardInterrupt"
    assert children[1].info.status == "KILLED"
    assert parent.info.status == "KILLED"

    summary = run_sweep(compose(overrides), finetune=FakeFineTune())
    _, study, _, _, _ = assert_consistent(overrides, n_trials=3)
    assert summary.complete == 3
    retried = [t for t in study.trials[2:] if t.params == interrupted.params]  # queued first
    assert [t.state for t in retried] == [TrialState.COMPLETE]


def test_a_trial_left_running_without_a_heartbeat_is_failed_and_retried(fast_overrides, compose):
    """A process stopped inside Optuna's ask() leaves a RUNNING trial with no heartbeat: the
    next sweep fails it (never started) instead of waiting for it forever."""
    overrides = [
        *fast_overrides,
        "pruner=none",
        "study.heartbeat_interval=1",
        "study.grace_period=2",
    ]
    cfg = compose([*overrides, "study.n_trials=1"])
    run_sweep(cfg, finetune=FakeFineTune())  # creates the study: 1 finished
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    orphan = study.ask()  # RUNNING, no heartbeat, no worker: nobody will ever finish it
    done, summary = threading.Event(), {}
    extended = compose([*overrides, "study.n_trials=2"])
    thread = threading.Thread(
        target=lambda: (summary.update(s=run_sweep(extended, finetune=FakeFineTune())), done.set()),
        daemon=True,
    )
    thread.start()
    assert done.wait(timeout=120), "the sweep waited for a trial that never started"
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    stale = study.trials[orphan.number]
    assert stale.state == TrialState.FAIL
    assert "never started" in stale.user_attrs[schema.INTERRUPTED_ATTR]
    assert summary["s"].complete == 2
    assert not study.get_trials(states=(TrialState.RUNNING,))
