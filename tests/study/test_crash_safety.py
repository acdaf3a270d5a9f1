"""Real interruptions: a sweep in a subprocess is killed with SIGKILL (during training, during
evaluation, while a checkpoint is written, while it is logged to MLflow) or stopped with SIGINT /
SIGTERM, then the same command resumes. Fault points (``HARNESS_FAULTS=POINT:TRIAL=pause``) hold
the process at the chosen point; the signal itself is real."""

from __future__ import annotations

import signal
import time

import optuna
import pytest

from harness.records import schema
from tests.helpers.sweeps import SweepProcess, assert_consistent, finished_trials, stores

pytestmark = pytest.mark.integration  # sweeps in subprocesses, kill -9 and signals

TrialState = optuna.trial.TrialState


@pytest.fixture
def crash_overrides(sweep_overrides):
    # checkpoints.keep=null: every complete trial writes its checkpoint, so the kills while one
    # is written or logged happen whatever the trials score
    return [
        *sweep_overrides,
        "study.n_trials=4",
        "pruner=none",
        "train.num_train_epochs=2",
        "study.heartbeat_interval=1",
        "study.grace_period=2",
        "checkpoints.keep=null",
    ]


def artifact_files(client, run_id: str, path: str = schema.CHECKPOINT_ARTIFACT) -> list[str]:
    out = []
    for item in client.list_artifacts(run_id, path):
        out += artifact_files(client, run_id, item.path) if item.is_dir else [item.path]
    return out


def test_kill_9_at_any_point_then_the_same_command_resumes(crash_overrides, tmp_path):
    output = tmp_path / "sweeps" / "study"
    kept: dict = {}
    # (fault point, trial killed there, trial whose parameters it ran)
    kills = [
        ("train_step:1:3", 1, 1),
        ("evaluate:2", 2, 1),
        ("checkpoint:4", 4, 4),
        ("artifact:5", 5, 4),
    ]
    for spec, number, _ in kills:
        sweep = SweepProcess(crash_overrides, faults=f"{spec}=pause")
        sweep.wait_for(f"harness fault: {spec.split(':')[0]} reached (trial {number},")
        sweep.signal(signal.SIGKILL)
        assert sweep.wait() == -signal.SIGKILL
        _, study, client, _, children = stores(crash_overrides)
        assert study.trials[number].state == TrialState.RUNNING  # as the kill left it
        assert children[number].info.status == "RUNNING"
        now = finished_trials(study)
        assert {n: now[n] for n in kept} == kept  # finished trials are never touched
        kept = now
        if spec.startswith("train_step"):
            # as if the trial had run on another machine: only its heartbeat can tell it died
            study._storage.set_trial_user_attr(
                study.trials[number]._trial_id,
                schema.WORKER_ATTR,
                {"host": "elsewhere", "boot": "", "pid": 1},
            )
            time.sleep(3.5)  # past the grace period
        if spec.startswith("checkpoint"):  # killed half-way through writing it
            partial = output / ".partial" / f"trial-{number}"
            assert (partial / "adapter_model.safetensors").is_file()
            assert not (partial / "tokenizer.json").exists()
        if spec.startswith("artifact"):  # killed half-way through logging it
            assert len(artifact_files(client, children[number].info.run_id)) == 1

    sweep = SweepProcess(crash_overrides)
    assert sweep.wait() == 0, sweep.err
    cfg, study, client, parent, children = assert_consistent(crash_overrides, n_trials=4)
    assert {n: finished_trials(study)[n] for n in kept} == kept
    states = [t.state for t in study.trials]
    assert states == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.COMPLETE,
    ]
    for _, number, original in kills:  # killed: FAIL in Optuna, FAILED with the reason in MLflow
        run = children[number]
        assert run.info.status == "FAILED"
        assert run.data.tags[schema.ERROR_TAG].startswith("interrupted")
        assert schema.CHECKPOINT_ARTIFACT not in {
            a.path for a in client.list_artifacts(run.info.run_id)
        }
        retry = study.trials[number + 1]  # its parameters ran again, as the next trial
        assert retry.system_attrs["failed_trial"] == original
        assert retry.params == study.trials[original].params
    assert "heartbeat" in children[1].data.tags[schema.ERROR_TAG]  # found by its heartbeat
    assert "process" in children[2].data.tags[schema.ERROR_TAG]  # found by its process id, at once
    assert not (output / ".partial").exists() or not any((output / ".partial").iterdir())
    best = study.best_trial.number
    assert (output / "best").resolve() == (output / "checkpoints" / f"trial-{best}").resolve()
    assert schema.CHECKPOINT_ARTIFACT in {
        a.path for a in client.list_artifacts(children[best].info.run_id)
    }


# 45-120 s (a sweep stopped and resumed twice); tests/base/test_interrupts.py keeps signals in the
# default run, the kill -9 test above keeps stop-and-resume (under 10 minutes in all)
@pytest.mark.slow
def test_ctrl_c_and_sigterm_stop_within_seconds_record_the_trial_and_resume(crash_overrides):
    overrides = [o for o in crash_overrides if not o.startswith("study.n_trials")]
    overrides.append("study.n_trials=2")
    for signum, spec, number in [
        (signal.SIGINT, "train_step:0:3", 0),
        (signal.SIGTERM, "evaluate:1", 1),
    ]:
        sweep = SweepProcess(overrides, faults=f"{spec}=pause")
        sweep.wait_for(f"reached (trial {number},")
        sent = time.monotonic()
        sweep.signal(signum)
        code = sweep.wait(timeout=60)
        stopped_in = time.monotonic() - sent
        name = signal.Signals(signum).name
        assert code == 128 + signum, sweep.err
        assert stopped_in < 30, stopped_in  # generous: it is a matter of seconds
        assert f"interrupted ({name})" in sweep.err
        assert "Resume with: python -m harness.sweep" in sweep.err and "Traceback" not in sweep.err
        _, study, client, parent, children = stores(overrides)
        trial = study.trials[number]
        assert trial.state == TrialState.FAIL
        assert trial.user_attrs[schema.INTERRUPTED_ATTR] == f"interrupted by {name}"
        assert children[number].info.status == "KILLED"
        assert children[number].data.tags[schema.ERROR_TAG] == f"interrupted: interrupted by {name}"
        assert parent.info.status == "KILLED"
        queued = study.trials[number + 1]  # the same parameters, queued to run again
        assert queued.state == TrialState.WAITING and queued.params == trial.params

    sweep = SweepProcess(overrides)
    assert sweep.wait() == 0, sweep.err
    _, study, _, _, children = assert_consistent(overrides, n_trials=2)
    assert [t.state for t in study.trials] == [
        TrialState.FAIL,
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.COMPLETE,
    ]
    assert study.trials[2].params == study.trials[0].params


# 20-40 s; the kill -9 test above keeps a trial left RUNNING and retried in the default run
@pytest.mark.slow
def test_a_trial_left_running_without_a_heartbeat_is_failed_and_retried_not_waited_for(
    crash_overrides, compose
):
    """A process stopped inside Optuna's ask() (or another tool that asked for a trial) leaves a
    RUNNING trial that never sent a heartbeat: Optuna's stale check skips it, so a sweep whose
    finished + running trials reach n_trials would wait for it forever."""
    import threading

    from harness.study import run_sweep

    cfg = compose([*crash_overrides, "study.n_trials=1"])
    run_sweep(compose([*crash_overrides, "study.n_trials=1"]))  # creates the study: 1 finished
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    orphan = study.ask()  # RUNNING, no heartbeat, no worker: nobody will ever finish it
    extended = compose([*crash_overrides, "study.n_trials=2"])
    done = threading.Event()
    summary = {}
    thread = threading.Thread(
        target=lambda: (summary.update(s=run_sweep(extended)), done.set()), daemon=True
    )
    thread.start()
    assert done.wait(timeout=120), "the sweep waited for a trial that never started"
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    stale = study.trials[orphan.number]
    assert stale.state == TrialState.FAIL
    assert "never started" in stale.user_attrs[schema.INTERRUPTED_ATTR]
    assert summary["s"].complete == 2
    assert not study.get_trials(states=(TrialState.RUNNING,))


# ~50 s: two workers and a forced stale heartbeat; the kill -9 test above keeps the default run's
# crash safety (under 10 minutes in all)
@pytest.mark.slow
def test_a_live_trial_declared_stale_stops_and_leaves_the_other_workers_record(
    crash_overrides, compose
):
    """Worker A is suspended (SIGSTOP) in the middle of trial 0 for longer than the grace
    period; another worker fails it as stale, closes its run, retries its parameters and
    finishes the study. Resumed (SIGCONT), A notices, stops the trial without writing over
    that record, and goes on (exit 0)."""
    from harness.study import run_sweep

    overrides = [*crash_overrides, "study.n_trials=2"]
    worker = SweepProcess(overrides, faults="train_step:0:3=wait")
    worker.wait_for("harness fault: train_step reached (trial 0,")
    worker.signal(signal.SIGSTOP)
    try:
        _, study, _, _, _ = stores(overrides)
        # seen from elsewhere: only the heartbeat can tell whether it is alive
        study._storage.set_trial_user_attr(
            study.trials[0]._trial_id,
            schema.WORKER_ATTR,
            {"host": "elsewhere", "boot": "", "pid": 1},
        )
        time.sleep(3.5)  # past the grace period (2 s)
        run_sweep(compose(overrides))  # the other worker: fails trial 0, runs the study out
    finally:
        worker.signal(signal.SIGCONT)
    assert worker.wait() == 0, worker.err[-3000:]
    assert "Cannot tell" not in worker.err
    assert "failed by another worker while it ran" in worker.err
    _, study, client, _, children = stores(overrides)
    stale = study.trials[0]
    assert stale.state == TrialState.FAIL
    run = children[0]
    assert "no heartbeat" in run.data.tags[schema.ERROR_TAG]
    assert run.info.status == "FAILED" and run.data.tags[schema.STATE_TAG] == "FAIL"
    assert schema.CHECKPOINT_ARTIFACT not in {
        a.path for a in client.list_artifacts(run.info.run_id)
    }
    assert assert_consistent(overrides, n_trials=2)
