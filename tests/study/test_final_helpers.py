"""final.workers: a lone sweep's final-stage runs trained by helper processes beside it, on the
real stores with the tiny BERT; a kill -9 of the sweep stops its helper and loses nothing."""

from __future__ import annotations

import os
import re
import signal
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient

from harness.records import schema, trials
from harness.study.workers import FinalHelpers, final_processes
from tests.helpers.sweeps import SweepProcess

pytestmark = pytest.mark.integration  # sweeps of the tiny BERT with their final stage

TrialState = optuna.trial.TrialState
needs_two_cores = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="helpers need a core each")


@pytest.fixture
def helper_overrides(sweep_overrides):
    return [
        *[o for o in sweep_overrides if o not in ("final.seeds=0", "final.workers=1")],
        "study.n_trials=3",
        "train.num_train_epochs=1",
        "final.top_k=2",
        "final.seeds=2",
        "final.workers=2",
        "study.heartbeat_interval=1",
        "study.grace_period=2",
        "report.enabled=false",
    ]


def final_trials(cfg) -> list[optuna.trial.FrozenTrial]:
    companion = optuna.load_study(
        study_name=trials.final_study_name(cfg.study.name), storage=cfg.study.storage
    )
    return companion.get_trials(deepcopy=False)


def assert_recorded(cfg) -> None:
    """Every final run complete once in Optuna and once, FINISHED, in MLflow; the study's
    parent run closed FINISHED."""
    complete = [t for t in final_trials(cfg) if t.state == TrialState.COMPLETE]
    keys = sorted(trials.final_key(t) for t in complete)
    assert len(keys) == len(set(keys)) == 4, keys  # every run once, none twice
    assert not [t for t in final_trials(cfg) if t.state != TrialState.COMPLETE] or all(
        t.state == TrialState.FAIL for t in final_trials(cfg) if t.state != TrialState.COMPLETE
    )  # an interrupted run is closed as failed and queued again
    client = MlflowClient(str(cfg.tracking.uri))
    experiment = client.get_experiment_by_name(cfg.study.name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    finals = [r for r in runs if r.data.tags.get(schema.ROLE_TAG) == schema.ROLE_FINAL]
    finished = sorted(r.info.run_name for r in finals if r.info.status == "FINISHED")
    assert finished == sorted(f"final-{n}-seed{k}" for n, k in keys)
    assert all(r.info.status != "RUNNING" for r in runs)
    (parent,) = [r for r in runs if r.data.tags.get(schema.ROLE_TAG) == schema.ROLE_STUDY]
    assert parent.info.status == "FINISHED"


def test_how_many_processes_train_the_final_runs(compose, sweep_overrides):
    cfg = compose([*sweep_overrides, "final.workers=2"])
    cores = os.cpu_count() or 1
    assert final_processes(cfg, 4) == min(2, cores)
    assert final_processes(cfg, 1) == 1  # one run: nobody to share it with
    cfg.final.workers = 1
    assert final_processes(cfg, 4) == 1
    cfg.final.workers = 2
    cfg.study.worker = 0  # a worker of several: the workers share the runs already
    assert final_processes(cfg, 4) == 1


def test_the_helpers_command_is_the_sweeps_own_with_its_worker_keys_replaced():
    helpers = FinalHelpers(
        ["+sweep=lora", "study.workers=1", "study.threads=2", "display.progress=true", "x=1"]
    )
    assert helpers.overrides == ["+sweep=lora", "x=1"]


# The sweep's own first final run (run 0) waits 3 s at each of its first 8 steps: the tiny
# model's runs take a second, a helper's start-up (imports, the model) several.
SLOW_RUN_0 = ",".join(f"final_train_step:0:{hit}=wait" for hit in range(1, 9))


@needs_two_cores
def test_a_helper_trains_final_runs_beside_the_sweep(helper_overrides, compose):
    sweep = SweepProcess(helper_overrides, faults=SLOW_RUN_0)
    assert sweep.wait() == 0, sweep.err
    assert "final stage: 2 processes train its runs" in sweep.err
    assert "[final 1]" in sweep.err
    cfg = compose(helper_overrides)
    assert_recorded(cfg)
    runs = final_trials(cfg)
    assert [t.state for t in runs] == [TrialState.COMPLETE] * 4
    assert len({trials.final_key(t) for t in runs}) == 4  # each run once
    pids = {t.user_attrs[schema.WORKER_ATTR]["pid"] for t in runs}
    assert sweep.proc.pid in pids and len(pids) == 2, pids
    assert sweep.stdout.count("Chosen configuration:") == 1  # one choice, one summary
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    assert study.user_attrs[schema.FINAL_ATTR]["trial"] is not None


@pytest.mark.slow
@needs_two_cores
def test_a_kill_9_of_the_sweep_stops_its_helper_and_a_rerun_finishes(helper_overrides, compose):
    # both processes stop in the middle of a run: the sweep in run 0, the helper in run 1
    sweep = SweepProcess(
        helper_overrides, faults="final_train_step:0=pause,final_train_step:1:2=pause"
    )
    sweep.wait_for("final stage: 2 processes train its runs")
    helper = int(re.search(r"pid (\d+);", sweep.err).group(1))
    sweep.wait_for(f"[final 1] harness fault: final_train_step reached (trial 1, pid {helper})")
    os.kill(sweep.proc.pid, signal.SIGKILL)
    sweep.wait()
    deadline = time.monotonic() + 60
    while os.path.exists(f"/proc/{helper}") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not os.path.exists(f"/proc/{helper}"), "the helper outlived its sweep"

    rerun = SweepProcess(helper_overrides)
    assert rerun.wait() == 0, rerun.err
    assert_recorded(compose(helper_overrides))
