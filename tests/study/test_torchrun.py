"""One trial across processes: ``torchrun --nproc_per_node=2 -m harness.sweep`` on this CPU (DDP
over gloo, the tiny BERT). Rank 0 runs the study, rank 1 trains what it hands on
(:mod:`harness.study.ranks`). Each rank writes what it trained to ``HARNESS_RANK_RECORD``
(one JSON line per fine-tune, from the config it trained and the metrics its Trainer gave it),
which is what the checks below compare across ranks and against Optuna and MLflow."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow.tracking import MlflowClient

from harness.records import schema, trials
from tests.helpers.configs import compose

pytestmark = pytest.mark.integration  # torchrun, two ranks, kill -9

ROOT = Path(__file__).resolve().parents[2]
TrialState = optuna.trial.TrialState


def torchrun(overrides: list[str], record: Path, faults: str = "") -> subprocess.Popen[str]:
    """``python -m torch.distributed.run --nproc_per_node=2 -m harness.sweep OVERRIDES``."""
    env = {
        **os.environ,
        "HARNESS_RANK_RECORD": str(record),
        "HARNESS_FAULTS": faults,
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--standalone",  # its rendezvous on a port of its own choosing
            "-m",
            "harness.sweep",
            *overrides,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a test that fails kills the whole launch
    )


def finish(proc: subprocess.Popen[str], timeout: float = 420) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"torchrun hung; stderr:\n{err[-4000:]}") from None
    return proc.returncode, out, err


def ranks_record(record: Path) -> dict[int, list[dict]]:
    return {
        rank: [
            json.loads(line) for line in (record / f"rank-{rank}.jsonl").read_text().splitlines()
        ]
        for rank in (0, 1)
    }


@pytest.fixture
def ddp_overrides(sweep_overrides):
    # 240 rows, 2 ranks x 16 per batch: 8 steps per epoch, 2 evaluations per epoch
    return [*sweep_overrides, "train.num_train_epochs=2"]


# in the default run (25 s on 2 cores): the one test of the ranks' protocol that CI runs
def test_one_study_trial_per_trial_both_ranks_train_it_and_stop_together(ddp_overrides, tmp_path):
    # every trial pruned at its second evaluation (accuracy never reaches 0.99): the pruner's
    # decision, taken on rank 0, must stop rank 1 at the same evaluation
    overrides = [
        *ddp_overrides,
        "study.n_trials=3",
        "pruner=threshold",
        "pruner.lower=0.99",
        "pruner.n_warmup_steps=2",
    ]
    record = tmp_path / "ranks"
    code, out, err = finish(torchrun(overrides, record))
    assert code == 0, err[-4000:]
    assert "3 of 3 trials finished" in out

    cfg = compose(overrides)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 3  # no duplicate, no fail
    ranks = ranks_record(record)
    assert (
        [r["label"] for r in ranks[0]]
        == [r["label"] for r in ranks[1]]
        == [f"trial {t.number}" for t in study.trials]
    )
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    for trial, mine, theirs in zip(study.trials, ranks[0], ranks[1], strict=True):
        # the same configuration, trained by both (each rank's own config, not what rank 0 says)
        assert mine["values"] == theirs["values"] == trial.params
        assert (
            mine["learning_rate"] == theirs["learning_rate"] == trial.params["train.learning_rate"]
        )
        # every evaluation scored the same on both ranks (gathered over the whole split)
        assert mine["evaluations"] == theirs["evaluations"]
        # stopped together, at the evaluation the pruner chose, after the same steps
        assert mine["pruned"] and theirs["pruned"]
        assert mine["stopped_at"] == theirs["stopped_at"] == 2
        assert mine["steps"] == theirs["steps"] == 8
        assert sorted(trial.intermediate_values) == [1, 2]
        reported, sign = trials.pruning_signal(cfg.study)  # what rank 0 reported to Optuna
        assert trial.intermediate_values[2] == pytest.approx(
            sign * mine["evaluations"][1][f"eval_{reported}"]
        )
        # the curve recorded once, by rank 0
        history = client.get_metric_history(trial.user_attrs[schema.RUN_ID_ATTR], "val_accuracy")
        assert sorted(m.step for m in history) == [4, 8]
    runs = client.search_runs(
        [client.get_experiment_by_name(cfg.study.name).experiment_id], max_results=100
    )
    roles = [r.data.tags.get(schema.ROLE_TAG) for r in runs]
    assert roles.count(schema.ROLE_TRIAL) == 3 and roles.count(schema.ROLE_STUDY) == 1
    assert len(runs) == 4


@pytest.mark.slow  # two launches (~1 min on 2 cores)
def test_a_paused_trial_continues_on_both_ranks_as_if_it_had_never_paused(ddp_overrides, tmp_path):
    # Two configurations, queued. Under the promotion scheduler trial 0 is alone at rung 1 and
    # is paused there; a configuration is continued from its saved state later. The same two,
    # trained straight through (no pruner) in another study, must give the same evaluations
    # after the pause: on rank 1 too, whose dropout masks come from its own RNG state (saved
    # with the pause through rank 0; without it, rank 1 would draw other masks from there on).
    configs = ", ".join(
        f"{{train.learning_rate: {lr}, peft.config.r: 8, peft.config.lora_alpha: 16, "
        f"peft.config.lora_dropout: 0.1, train.warmup_steps: 0.05}}"
        for lr in (0.03, 0.02)
    )
    common = [*ddp_overrides, f"study.enqueue=[{configs}]", "study.n_trials=2"]

    def launch(name: str, pruner: str) -> dict[int, list[dict]]:
        overrides = [
            *[o for o in common if not o.startswith(("study.output_dir=", "pruner="))],
            f"pruner={pruner}",
            f"study.name={name}",
            f"study.output_dir={tmp_path / name}",
        ]
        record = tmp_path / f"{name}-ranks"
        code, out, err = finish(torchrun(overrides, record))
        assert code == 0, err[-4000:]
        return ranks_record(record)

    paused = launch("paused", "promotion")
    straight = launch("straight", "none")
    for rank in (0, 1):
        by_values = {json.dumps(r["values"], sort_keys=True): r for r in straight[rank]}
        later = [r for r in paused[rank] if r["continued"]]
        assert later, [r["label"] for r in paused[rank]]
        for trial in later:
            alone = by_values[json.dumps(trial["values"], sort_keys=True)]
            at = {e["epoch"]: e for e in alone["evaluations"]}
            compared = [e for e in trial["evaluations"] if e["epoch"] in at]
            assert compared, (trial["evaluations"], alone["evaluations"])
            for evaluation in compared:
                assert evaluation["eval_loss"] == pytest.approx(
                    at[evaluation["epoch"]]["eval_loss"], rel=1e-6, abs=1e-7
                ), (rank, trial["label"], evaluation["epoch"])


@pytest.mark.slow
def test_kill_9_of_rank_1_mid_trial_is_retried_and_the_final_stage_runs_on_both(
    ddp_overrides, tmp_path
):
    overrides = [*ddp_overrides, "study.n_trials=2", "pruner=none", "checkpoints.keep=null"]
    record = tmp_path / "ranks"
    # both ranks stop 3 s at trial 1's third step: rank 1 is killed there
    proc = torchrun(overrides, record, faults="train_step:1:3=wait")
    killed = None
    deadline = time.monotonic() + 300
    lines = []
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line)
        # (the two ranks write to one stderr: their lines may arrive joined on one line)
        for found in re.findall(r"harness fault: train_step reached \(trial 1, pid (\d+)\)", line):
            pid = int(found)
            if killed is None and b"RANK=1" in Path(f"/proc/{pid}/environ").read_bytes().split(
                b"\0"
            ):
                os.kill(pid, signal.SIGKILL)
                killed = pid
        if time.monotonic() > deadline:
            break
    code, _, err = finish(proc)
    err = "".join(lines) + err
    assert killed is not None, err[-4000:]
    assert code != 0  # torchrun ends the launch once a rank died
    cfg = compose(overrides)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    stopped = study.trials[1]
    assert stopped.state == TrialState.FAIL  # rank 0 recorded it
    assert str(stopped.user_attrs[schema.INTERRUPTED_ATTR]).startswith("interrupted by")

    # the same command, with the final stage on: the trial is retried with its parameters,
    # then the final run is trained by both ranks, and the launch ends (no rank left waiting)
    overrides = [*overrides, "final.seeds=1", "final.top_k=1"]
    code, out, err = finish(torchrun(overrides, record))
    assert code == 0, err[-4000:]
    assert "2 of 2 trials finished" in out
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    retry = [t for t in study.trials if t.number > 1 and t.params == stopped.params]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert states.count(TrialState.COMPLETE) == 2 and states.count(TrialState.FAIL) == 1
    ranks = ranks_record(record)
    finals = {rank: [r for r in lines if r["final"]] for rank, lines in ranks.items()}
    assert len(finals[0]) == len(finals[1]) == 1
    assert finals[0][0]["values"] == finals[1][0]["values"]
    assert finals[0][0]["evaluations"] == finals[1][0]["evaluations"]
    record_final = study.user_attrs[schema.FINAL_ATTR]
    assert record_final["trial"] in {t.number for t in study.trials if t.state.name == "COMPLETE"}
    # the retried trial: trained by both ranks, once each, after the kill
    retried = [r for r in ranks[1] if r["label"] == f"trial {retry[0].number}"]
    assert len(retried) == 1 and retried[0]["values"] == stopped.params
    # the kept checkpoint's validation logits: the whole split, gathered from both ranks
    logits = np.load(
        Path(cfg.study.output_dir) / "checkpoints" / f"trial-{retry[0].number}" / "val_logits.npy"
    )
    assert logits.shape[0] == 60


def test_torchrun_with_study_workers_is_refused(ddp_overrides, tmp_path):
    code, _, err = finish(torchrun([*ddp_overrides, "study.workers=2"], tmp_path / "ranks"), 180)
    assert code != 0
    assert "error: study.workers" in err and "torchrun" in err
    assert not (tmp_path / "ranks").exists()


@pytest.mark.slow
def test_sigterm_to_the_launch_stops_both_ranks_records_the_trial_and_the_next_run_retries_it(
    ddp_overrides, tmp_path
):
    overrides = [*ddp_overrides, "study.n_trials=2", "pruner=none", "final.seeds=0"]
    record = tmp_path / "ranks"
    # both ranks stop 3 s at trial 0's third step: the launch is stopped there, as a cluster's
    # scheduler or Ctrl-C in the terminal (torchrun passes the signal to every rank) would
    proc = torchrun(overrides, record, faults="train_step:0:3=wait")
    assert proc.stderr is not None
    lines, pids = [], set()
    for line in proc.stderr:
        lines.append(line)
        # (the two ranks write to one stderr: their lines may arrive joined on one line)
        found = re.findall(r"harness fault: train_step reached \(trial 0, pid (\d+)\)", line)
        pids.update(int(pid) for pid in found)
        if len(pids) == 2:  # both ranks are in the trial
            os.kill(proc.pid, signal.SIGTERM)
            break
    started = time.monotonic()
    code, _, err = finish(proc, timeout=120)
    err = "".join(lines) + err
    assert len(pids) == 2, err[-4000:]
    assert code != 0 and time.monotonic() - started < 60, err[-4000:]
    for pid in pids:  # no rank outlives the launch
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        ), pid
    cfg = compose(overrides)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    stopped = study.trials[0]
    assert stopped.state == TrialState.FAIL  # rank 0 recorded it
    assert str(stopped.user_attrs[schema.INTERRUPTED_ATTR]) == "interrupted by SIGTERM"
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    run = client.get_run(stopped.user_attrs[schema.RUN_ID_ATTR])
    assert run.info.status == "KILLED"

    # the same command: the interrupted trial's parameters again, and the study reaches its total
    code, out, err = finish(torchrun(overrides, record))
    assert code == 0, err[-4000:]
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 2 and TrialState.RUNNING not in states
    retry = [t for t in study.trials if t.number > 0 and t.params == stopped.params]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
