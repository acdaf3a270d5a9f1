"""SLURM's path, run here through submitit's local executor (hydra-submitit-launcher, the
``slurm`` extra): ``-m hydra/launcher=submitit_local study.worker=0,1`` starts two jobs, real
processes, workers of one study on a journal file. One job gets SIGUSR2 mid-trial, as SLURM
sends it ``signal_delay_s`` before a job's time limit: the trial's training state is saved, the
trial recorded as interrupted, and submitit requeues the job (the local executor restarts a job
that exits with its requeue code, as SLURM's ``scontrol requeue`` would); the study then ends
with that trial continued from its state, not started again.

The ``slurm_gpu`` preset (conf/hydra/launcher/slurm_gpu.yaml) is checked by composition: there
is no SLURM here.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import optuna
import pytest

from harness.records import schema, trials
from tests.helpers.sweeps import SweepProcess, assert_consistent

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
pytestmark = pytest.mark.integration  # jobs in real processes, a real signal

TrialState = optuna.trial.TrialState
FAULT = re.compile(r"harness fault: train_step reached \(trial 1, pid (\d+)\)")


@pytest.fixture(autouse=True)
def helpers_open_any_url(monkeypatch):
    """The shared helpers (tests/helpers/sweeps.py) load a study from its URL string, which
    Optuna reads as an RDB URL only: here a journal opens through the harness's builder."""
    from harness.base.storages import open_url

    real = optuna.load_study

    def load(*, study_name, storage, **kwargs):
        if isinstance(storage, str):
            storage = open_url(storage, create=False)
        return real(study_name=study_name, storage=storage, **kwargs)

    monkeypatch.setattr(optuna, "load_study", load)


def job_logs(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted(folder.rglob("*_log.*")))


def wait_for_fault(folder: Path, sweep: SweepProcess, timeout: float = 400) -> int:
    """The pid of the job process that reached the fault point (its log says so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = FAULT.search(job_logs(folder)) if folder.is_dir() else None
        if found:
            return int(found.group(1))
        if sweep.proc.poll() is not None:
            break
        time.sleep(0.1)
    sweep.proc.kill()
    raise AssertionError(f"no job reached the fault; launcher:\n{sweep.err[-3000:]}")


@pytest.mark.slow  # two jobs of the tiny model on 2 cores, one requeued: 2-4 minutes
def test_two_submitit_jobs_on_a_journal_study_and_a_requeue_continues_the_trial(
    sweep_overrides, tmp_path
):
    overrides = [
        *[o for o in sweep_overrides if not o.startswith("study.storage=")],
        f"study.storage=journal:///{tmp_path}/sweeps/optuna.log",
        "study.n_trials=3",
        "pruner=none",
        "train.num_train_epochs=2",  # 30 steps a trial
        "study.resume_trials=true",
        "study.heartbeat_interval=1",
        "study.grace_period=5",
        "report.enabled=false",
        "train.evaluate_from=0",  # every evaluation: the curve checked below has no gap
    ]
    launch = [
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=30",
        "hydra.launcher.cpus_per_task=1",
        "study.worker=0,1",
        *overrides,
    ]
    # trial 1 waits 3 s in its training step 20: the signal arrives inside that step
    sweep = SweepProcess(launch, faults="train_step:1:20=wait")
    folder = tmp_path / "sweeps" / "study" / "multirun" / ".submitit"
    pid = wait_for_fault(folder, sweep)
    os.kill(pid, signal.SIGUSR2)  # what SLURM sends before the time limit
    assert sweep.wait(timeout=600) == 0, sweep.err[-3000:]
    logs = job_logs(folder)
    # the harness saved the trial, then submitit's handler ran: checkpoint, requeue, restart
    assert "SIGUSR2: saving the running trial's training state" in logs
    assert "Requeued job" in logs, logs[-3000:]
    assert logs.count("Starting with JobEnvironment") == 3  # two jobs, one started again

    cfg, study, client, _, children = assert_consistent(overrides, n_trials=3)
    stopped = study.trials[1]
    assert stopped.state == TrialState.FAIL
    assert stopped.user_attrs[schema.INTERRUPTED_ATTR] == "interrupted by SIGUSR2"
    mark = stopped.user_attrs[schema.INTERRUPTED_STATE_ATTR]
    assert mark["step"] == 20
    assert children[1].info.status == "KILLED"
    assert schema.STATE_SAVED_TAG in children[1].data.tags
    (cont,) = [t for t in study.trials if t.user_attrs.get(schema.CONTINUES_ATTR) == 1]
    assert cont.state == TrialState.COMPLETE and cont.params == stopped.params
    budget = study.trials[0].user_attrs[schema.COMPUTE_ATTR]["steps_planned"]
    assert 20 + cont.user_attrs[schema.STEPS_TRAINED_ATTR] == budget == 30
    assert sorted(cont.intermediate_values) == list(range(1, len(cont.intermediate_values) + 1))
    assert trials.count(study)["finished"] == 3
    workers = {str(t.user_attrs[schema.WORKER_ATTR]["pid"]) for t in study.trials}
    assert len(workers) >= 2  # both jobs ran trials
    assert not (Path(cfg.study.output_dir) / mark["state"]).exists()  # continued: removed


def test_the_slurm_preset_asks_for_one_gpu_per_job_and_a_signal_before_the_limit():
    from hydra import compose, initialize_config_dir

    import harness  # noqa: F401  (the config schemas)
    from tests.helpers.configs import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=["+sweep=lora", "hydra/launcher=slurm_gpu", "study.resume_trials=true"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.tasks_per_node) == (1, 1)
    assert launcher.signal_delay_s >= 60 and launcher.max_num_timeout > 0
    assert cfg.study.resume_trials is True
