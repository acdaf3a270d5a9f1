"""``study.resume_trials``: a signal saves the running trial's training state after its current
step, the trial ends FAIL as interrupted with ``harness.interrupted_state``, and the next run
continues it in a new trial (``harness.continues``) that reports the earlier evaluations,
continues the MLflow curves and trains only the steps left; without it, today's retry from
step 0.

The fast tier drives the scripted fake fine-tune (a real SIGTERM sent to this process from a
training step); one test runs a real sweep of the tiny model in a subprocess and SIGTERMs it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest

from harness.base import interrupts
from harness.records import schema, trials
from harness.records.compute import study_compute
from harness.study import run_sweep
from tests.helpers.fake_finetune import FakeFineTune
from tests.helpers.processes import as_foreground_job
from tests.helpers.sweeps import ROOT, SweepProcess, assert_consistent, stores

TrialState = optuna.trial.TrialState


def signal_at(step: int, fine_tune: int, fake: FakeFineTune, signum: int = signal.SIGTERM):
    """A step hook: the ``fine_tune``-th fine-tune of ``fake`` sends this process ``signum``
    during its step ``step`` (a real signal, as Ctrl-C or a cluster's would be)."""

    def hook(trial_cfg, global_step: int) -> None:
        if global_step == step and fake.started == fine_tune:
            os.kill(os.getpid(), signum)

    return hook


def sweep(overrides, compose, fake: FakeFineTune):
    """run_sweep under the CLI's signal handlers."""
    with interrupts.raise_on_signals():
        return run_sweep(compose(overrides), finetune=fake)


def curve_steps(client, run) -> list[int]:
    return [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]


@pytest.fixture
def resume_overrides(fast_overrides):
    # every evaluation (none skipped before train.evaluate_from): a signal may arrive at one
    return [
        *fast_overrides,
        "study.n_trials=3",
        "pruner=none",
        "study.resume_trials=true",
        "train.evaluate_from=0",
    ]


@pytest.mark.parametrize("where", ["between evaluations", "at an evaluation"])
def test_a_signal_saves_the_trial_and_the_next_run_continues_it(resume_overrides, compose, where):
    # the fake's budget: 240 rows / 16 = 15 steps an epoch, 4 epochs, 2 evaluations an epoch
    eval_steps = 8
    stop = 3 * eval_steps + (3 if where == "between evaluations" else 0)
    fake = FakeFineTune()
    fake.on_step = signal_at(stop, 2, fake)
    with pytest.raises(interrupts.Interrupted) as raised:
        sweep(resume_overrides, compose, fake)
    assert raised.value.exit_code == 143
    cfg, study, client, parent, children = stores(resume_overrides)
    first = study.trials[1]
    assert first.state == TrialState.FAIL
    assert first.user_attrs[schema.INTERRUPTED_ATTR] == "interrupted by SIGTERM"
    # saved after the step the signal arrived in, with the evaluation of that step when it
    # had one: nothing trained is lost
    assert first.user_attrs[schema.INTERRUPTED_STATE_ATTR] == {
        "evaluation": 3,
        "step": stop,
        "state": "paused/trial-1",
    }
    assert first.user_attrs[schema.STEPS_TRAINED_ATTR] == stop
    assert sorted(first.intermediate_values) == [1, 2, 3]
    state = Path(cfg.study.output_dir) / "paused" / "trial-1"
    assert (state / "harness.json").is_file() and (state / "trainer").is_dir()
    run = children[1]
    assert run.info.status == "KILLED"
    assert f"at step {stop} (evaluation 3)" in run.data.tags[schema.STATE_SAVED_TAG]
    assert parent.info.status == "KILLED"
    # queued already: the same parameters, continuing trial 1
    queued = study.trials[2]
    assert queued.state == TrialState.WAITING
    assert queued.system_attrs["fixed_params"] == first.params
    assert queued.user_attrs[schema.CONTINUES_ATTR] == 1
    assert queued.user_attrs[schema.CONFIG_ATTR] == 1
    assert trials.count(study)["finished"] == 1 and trials.count(study)["waiting"] == 1

    again = FakeFineTune()
    summary = sweep(resume_overrides, compose, again)
    assert summary.complete == 3
    cfg, study, client, parent, children = assert_consistent(resume_overrides, n_trials=3)
    assert [t.state for t in study.trials] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.COMPLETE,  # the continuation: trial 1's configuration, counted once
        TrialState.COMPLETE,
    ]
    assert trials.count(study)["finished"] == 3
    cont = study.trials[2]
    assert again.calls[0].resumed and cont.user_attrs[schema.CONTINUES_ATTR] == 1
    budget = study.trials[0].user_attrs[schema.COMPUTE_ATTR]["steps_planned"]
    assert budget == 60
    assert cont.user_attrs[schema.COMPUTE_ATTR]["steps_planned"] == budget - stop  # what was left
    # no step trained twice, none left out
    steps = first.user_attrs[schema.STEPS_TRAINED_ATTR] + cont.user_attrs[schema.STEPS_TRAINED_ATTR]
    assert steps == budget
    # the study's compute: the interrupted trial's steps are its configuration's, not failed
    compute = study_compute(study)
    assert compute.failed_trials == 0 and not compute.failed
    assert compute.totals["steps_planned"] == 3 * budget
    assert compute.totals["steps_trained"] == sum(
        t.user_attrs[schema.STEPS_TRAINED_ATTR] for t in study.trials
    )
    # one curve: the earlier evaluations, then the rest, without a gap
    evaluations = sorted(cont.intermediate_values)
    assert evaluations == list(range(1, len(study.trials[0].intermediate_values) + 1))
    assert {k: cont.intermediate_values[k] for k in (1, 2, 3)} == first.intermediate_values
    # in MLflow: the continuation's run starts with the interrupted run's curve
    earlier, later = curve_steps(client, children[1]), curve_steps(client, children[2])
    assert earlier == [eval_steps * k for k in (1, 2, 3)]
    assert later[:3] == earlier
    assert later[:-1] == [eval_steps * k for k in range(1, len(later))]
    assert children[2].data.tags[schema.CONTINUES_TAG].startswith("trial 1 (run ")
    assert children[1].data.tags[schema.CONTINUED_BY_TAG].startswith("trial 2 (run ")
    # the state is gone once its continuation ended
    assert not (Path(cfg.study.output_dir) / "paused" / "trial-1").exists()


def test_without_resume_trials_an_interrupted_trial_starts_again_from_step_0(
    fast_overrides, compose
):
    overrides = [*fast_overrides, "study.n_trials=3", "pruner=none", "train.evaluate_from=0"]
    fake = FakeFineTune()
    fake.on_step = signal_at(27, 2, fake)
    with pytest.raises(interrupts.Interrupted):
        sweep(overrides, compose, fake)
    cfg, study, _, _, children = stores(overrides)
    first = study.trials[1]
    assert first.state == TrialState.FAIL
    assert schema.INTERRUPTED_STATE_ATTR not in first.user_attrs
    assert schema.STATE_SAVED_TAG not in children[1].data.tags
    assert not (Path(cfg.study.output_dir) / "paused").exists()
    assert len(first.intermediate_values) == 3  # stopped in its step 27, as the signal came

    again = FakeFineTune()
    sweep(overrides, compose, again)
    _, study, _, _, _ = assert_consistent(overrides, n_trials=3)
    retry = study.trials[2]
    assert retry.params == first.params and not trials.is_continuation(retry)
    assert retry.system_attrs["failed_trial"] == 1
    assert not again.calls[0].resumed
    assert retry.user_attrs[schema.STEPS_TRAINED_ATTR] == 60  # all of it, again


def test_a_continuation_interrupted_again_goes_on_from_its_own_state_under_promotion(
    fast_overrides, compose
):
    """pruner=promotion: a promoted configuration and a new one stopped twice each way still
    end with every step trained once, each state continued once, the counts right."""
    overrides = [
        *[o for o in fast_overrides if o != "pruner=median"],
        "pruner=promotion",
        "study.n_trials=3",
        "study.resume_trials=true",
        "train.evaluate_from=0",  # every evaluation: the curves checked below have no gap
    ]
    fake = FakeFineTune()
    fake.on_step = signal_at(5, 1, fake)  # trial 0, before its first rung (step 8)
    with pytest.raises(interrupts.Interrupted):
        sweep(overrides, compose, fake)
    fake = FakeFineTune()
    fake.on_step = signal_at(7, 1, fake)  # its continuation (trial 1), stopped again
    with pytest.raises(interrupts.Interrupted):
        sweep(overrides, compose, fake)
    cfg, study, _, _, _ = stores(overrides)
    paused = Path(cfg.study.output_dir) / "paused"
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.WAITING]
    assert study.trials[1].user_attrs[schema.CONTINUES_ATTR] == 0
    assert study.trials[2].user_attrs[schema.CONTINUES_ATTR] == 1
    assert {t.user_attrs[schema.CONFIG_ATTR] for t in study.trials[1:]} == {0}
    assert sorted(p.name for p in paused.iterdir()) == ["trial-1"]  # trial 0's superseded

    fake = FakeFineTune()
    summary = sweep(overrides, compose, fake)
    cfg, study, client, _, children = stores(overrides)
    every = study.trials
    assert not [t for t in every if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert trials.count(study)["finished"] == 3 == summary.complete + summary.pruned
    chain = [every[0], every[1], every[2]]
    assert fake.calls[0].resumed and fake.calls[0].result.resumed_step == 7
    assert [t.user_attrs[schema.STEPS_TRAINED_ATTR] for t in chain[:2]] == [5, 2]
    assert chain[2].user_attrs[schema.CONTINUES_ATTR] == 1
    # each state continued once (the first rung is at step 8: trial 2 may pause there)
    for source, attempts in trials.continuations(every).items():
        assert len(attempts) == 1, source
    for trial in every:
        if trial.state == TrialState.FAIL:
            continue
        steps = curve_steps(client, children[trial.number])
        assert len(steps) == len(set(steps)) == len(trial.intermediate_values), trial.number
        assert sorted(trial.intermediate_values) == list(range(1, len(steps) + 1))
    assert sorted(p.name for p in paused.glob("trial-*")) == sorted(
        f"trial-{t.number}" for t in trials.paused(study)
    )


# Inside deferred(): the first SIGTERM only waits (pending), a second exits at once.
CHILD = textwrap.dedent("""
    import os, signal, sys, time
    from harness.base import interrupts
    with interrupts.raise_on_signals():
        with interrupts.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
            interrupts.check()  # does not raise: the trial's state is being saved
            print(f"pending {interrupts.pending()}", flush=True)
            if sys.argv[1] == "again":
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
                print("still running", flush=True)
        try:
            interrupts.check()
        except interrupts.Interrupted as exc:
            print(f"then: {exc}", flush=True)
            sys.exit(exc.exit_code)
""")


@pytest.mark.integration  # real signals to a child process
@pytest.mark.parametrize("signals", ["once", "again"])
def test_a_deferred_signal_waits_and_a_second_one_exits_at_once(signals):
    done = subprocess.run(
        [sys.executable, "-c", CHILD, signals],
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=60,
        preexec_fn=as_foreground_job,
    )
    assert f"pending {int(signal.SIGTERM)}" in done.stdout, done.stderr
    assert "saving the running trial's training state" in done.stderr
    if signals == "once":
        assert "then: interrupted by SIGTERM" in done.stdout
        assert done.returncode == 143
    else:
        assert "SIGTERM again: exiting now" in done.stderr
        assert "still running" not in done.stdout and "then:" not in done.stdout
        assert done.returncode == 143


@pytest.mark.integration  # a real sweep of the tiny model in a subprocess, SIGTERM
@pytest.mark.slow  # two sweeps of the tiny model: about 2 minutes on 2 shared cores
def test_sigterm_mid_trial_then_the_same_command_continues_it(sweep_overrides):
    overrides = [
        *sweep_overrides,
        "study.n_trials=2",
        "pruner=none",
        "train.num_train_epochs=2",
        "study.resume_trials=true",
        "report.enabled=false",
        "train.evaluate_from=0",  # every evaluation: the curves checked below have no gap
    ]
    # trial 1 waits 3 s in its training step 20: the signal arrives inside that step
    first = SweepProcess(overrides, faults="train_step:1:20=wait")
    first.wait_for("harness fault: train_step reached (trial 1,")
    first.signal(signal.SIGTERM)
    assert first.wait() == 143, first.err
    assert "saving the running trial's training state" in first.err
    cfg, study, client, _, children = stores(overrides)
    stopped = study.trials[1]
    mark = stopped.user_attrs[schema.INTERRUPTED_STATE_ATTR]
    assert stopped.state == TrialState.FAIL and mark["step"] == 20
    state = Path(cfg.study.output_dir) / mark["state"]
    trainer = state / "trainer"
    assert (trainer / "optimizer.pt").is_file() and (trainer / "trainer_state.json").is_file()
    assert children[1].info.status == "KILLED"

    second = SweepProcess(overrides)
    assert second.wait() == 0, second.err
    cfg, study, client, _, children = assert_consistent(overrides, n_trials=2)
    assert [t.state for t in study.trials] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.COMPLETE,
    ]
    cont = study.trials[2]
    assert cont.user_attrs[schema.CONTINUES_ATTR] == 1 and cont.params == stopped.params
    budget = study.trials[0].user_attrs[schema.COMPUTE_ATTR]["steps_planned"]
    assert 20 + cont.user_attrs[schema.STEPS_TRAINED_ATTR] == budget == 30
    evaluations = len(study.trials[0].intermediate_values)
    assert sorted(cont.intermediate_values) == list(range(1, evaluations + 1))
    assert {
        k: v for k, v in cont.intermediate_values.items() if k in stopped.intermediate_values
    } == stopped.intermediate_values
    earlier, later = curve_steps(client, children[1]), curve_steps(client, children[2])
    assert later[: len(earlier)] == earlier and len(later) == evaluations
    assert not state.exists()
