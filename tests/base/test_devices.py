"""Which GPUs a worker process gets (harness.base.devices), for each launcher: the harness's own
``study.workers=N``, a Hydra launcher's jobs (``study.worker=i``), a lone process, SLURM's own
CUDA_VISIBLE_DEVICES, GPUs shared by workers, several GPUs per trial under torchrun. No GPU is
needed: CUDA_VISIBLE_DEVICES is faked (and on a machine without one the trials train on the CPU,
as the process test at the end shows)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from omegaconf import OmegaConf

from harness.base import devices
from harness.base.devices import devices_for, narrow_devices, plan_workers
from harness.base.errors import ConfigError
from harness.records import schema

ROOT = Path(__file__).resolve().parents[2]


def study(**keys: object):
    base = {
        "workers": 1,
        "worker": None,
        "threads": None,
        "gpus_per_worker": 1,
        "workers_per_gpu": 1,
    }
    return OmegaConf.create({**base, **keys})


def gpus(study_cfg, env: dict[str, str], worker: int | None = None) -> tuple[str, ...]:
    return devices_for(study_cfg, worker=worker, env=env).gpus


@pytest.fixture
def machine(monkeypatch):
    """``machine(n)``: this machine has n GPUs (what NVML would count), and this process was
    started plainly (no CUDA_VISIBLE_DEVICES, no torchrun)."""
    for key in ("CUDA_VISIBLE_DEVICES", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)

    def have(count: int) -> None:
        monkeypatch.setattr(devices, "_machine_gpus", lambda: count)

    return have


def test_the_harness_workers_get_one_gpu_each_in_turn(machine):
    machine(4)
    plan = plan_workers(study(workers=4))
    assert [d.gpus for d in plan] == [("0",), ("1",), ("2",), ("3",)]
    assert [d.where() for d in plan] == ["GPU 0", "GPU 1", "GPU 2", "GPU 3"]
    # each worker, started with the launcher's pool and study.worker=i, decides the same
    pool = {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    assert [gpus(study(workers=4, worker=i), pool) for i in range(4)] == [d.gpus for d in plan]


def test_fewer_workers_than_gpus_spread_over_them(machine):
    machine(4)
    assert [d.gpus for d in plan_workers(study(workers=2, workers_per_gpu=2))] == [("0",), ("1",)]


def test_a_hydra_launchers_jobs_take_gpus_in_turn_and_wrap_around():
    """-m hydra/launcher=joblib study.worker=0,1,2: each job sees every GPU and narrows itself;
    a job beyond the GPUs shares one (its launcher need not run the jobs at once)."""
    env = {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert [gpus(study(worker=i), env) for i in range(3)] == [("0",), ("1",), ("0",)]
    assert devices_for(study(worker=1), env=env).describe() == "worker 1: GPU 1"


def test_a_lone_process_on_a_multi_gpu_machine_takes_one_gpu(machine):
    machine(8)
    lone = devices_for(study(), env={})
    assert lone.gpus == ("0",) and lone.worker is None
    assert lone.describe() == "this process: GPU 0"


def test_an_explicit_cuda_visible_devices_is_the_pool(machine):
    """A user's (or SLURM's, which sets it per job) CUDA_VISIBLE_DEVICES wins over the
    machine's GPUs: the machine's count is not even asked."""
    machine(8)
    slurm = {"CUDA_VISIBLE_DEVICES": "5"}  # a SLURM job given GPU 5 of the node
    assert gpus(study(worker=3), slurm) == ("5",)  # its 4th job: still its own GPU
    assert gpus(study(), {"CUDA_VISIBLE_DEVICES": "GPU-1a2b, GPU-3c4d"}) == ("GPU-1a2b",)
    assert [gpus(study(workers=2), {"CUDA_VISIBLE_DEVICES": "6,2"}, i) for i in (0, 1)] == [
        ("6",),
        ("2",),
    ]


def test_no_gpu_means_the_cpu_with_a_share_of_the_cores(machine, monkeypatch):
    machine(0)
    monkeypatch.setattr(devices.os, "cpu_count", lambda: 16)
    cpu = devices_for(study(workers=4), worker=1, env={})
    assert cpu.gpus == () and cpu.threads == 4 and cpu.where() == "CPU, 4 threads"
    assert devices_for(study(), env={}).where() == "CPU, default threads"
    for hidden in ("", "-1", "-1,0"):  # CUDA's own ways to hide every GPU
        assert gpus(study(workers=4), {"CUDA_VISIBLE_DEVICES": hidden}, 0) == ()
    assert gpus(study(), {"CUDA_VISIBLE_DEVICES": "1,-1,0"}) == ("1",)  # CUDA stops at -1


def test_workers_share_a_gpu_up_to_workers_per_gpu(machine):
    machine(2)
    plan = plan_workers(study(workers=4, workers_per_gpu=2))
    assert [d.gpus for d in plan] == [("0",), ("1",), ("0",), ("1",)]
    with pytest.raises(ConfigError, match=r"study\.workers: 5 workers on 2 GPU.*at most 4"):
        plan_workers(study(workers=5, workers_per_gpu=2))
    with pytest.raises(ConfigError, match=r"study\.workers: 3 workers .*workers_per_gpu=1"):
        plan_workers(study(workers=3))
    # a worker told its index by a Hydra launcher is checked against study.workers too
    with pytest.raises(ConfigError, match=r"^study\.workers"):
        devices_for(study(workers=3, worker=0), env={"CUDA_VISIBLE_DEVICES": "0,1"})


def test_several_gpus_per_worker_need_torchrun(machine):
    machine(4)
    with pytest.raises(
        ConfigError,
        match=r"^study\.gpus_per_worker: .*torchrun --nproc_per_node=2 -m harness\.sweep",
    ):
        devices_for(study(gpus_per_worker=2), env={})
    with pytest.raises(ConfigError, match=r"^study\.gpus_per_worker"):
        plan_workers(study(workers=2, gpus_per_worker=2))


def test_torchrun_ranks_share_the_workers_gpus_one_each():
    """torchrun --nproc_per_node=2 on 4 GPUs: every rank of worker 1's trial sees GPUs 2,3 (the
    same CUDA_VISIBLE_DEVICES), and torchrun / accelerate put rank LOCAL_RANK on cuda:LOCAL_RANK."""
    for rank in (0, 1):
        env = {
            "CUDA_VISIBLE_DEVICES": "0,1,2,3",
            "WORLD_SIZE": "2",
            "LOCAL_WORLD_SIZE": "2",
            "LOCAL_RANK": str(rank),
            "RANK": str(rank),
        }
        chosen = devices_for(study(gpus_per_worker=2, worker=1), env=env)
        assert chosen.gpus == ("2", "3") and chosen.world_size == 2 and chosen.local_rank == rank
        assert chosen.describe() == "worker 1: GPUs 2,3 (2 ranks, one GPU each)"
        # gpus_per_worker left at 1 means "one per rank"
        assert gpus(study(worker=1), env) == ("2", "3")
        assert gpus(study(), env) == ("0", "1")  # a lone torchrun
    with pytest.raises(ConfigError, match=r"^study\.gpus_per_worker: torchrun started 2"):
        devices_for(study(gpus_per_worker=4), env={**env, "CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    with pytest.raises(
        ConfigError, match=r"^study\.gpus_per_worker: 2 GPUs per worker, but only 1"
    ):
        devices_for(study(), env={**env, "CUDA_VISIBLE_DEVICES": "7"})
    # torchrun on CPUs (gloo): nothing to narrow
    cpu = devices_for(study(), env={**env, "CUDA_VISIBLE_DEVICES": ""})
    assert cpu.gpus == () and cpu.world_size == 2


@pytest.fixture
def fresh_process(monkeypatch):
    """A process where narrow_devices has not run yet (its state restored after)."""
    monkeypatch.setattr(devices, "_applied", None)
    monkeypatch.setattr(devices, "_found", {})
    for key in ("WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_narrowing_sets_the_processs_gpus_logs_them_and_the_trials_record_them(
    fresh_process, caplog
):
    fresh_process.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    with caplog.at_level(logging.INFO, logger="harness"):
        narrow_devices(study(workers=3, worker=1))
    assert devices.os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    assert [r.getMessage() for r in caplog.records] == ["worker 1: GPU 1"]
    recorded = devices.current()
    assert recorded["gpus"] == ["1"] and recorded["world_size"] == 1
    # the same process running the next job of a Hydra joblib launcher: drawn from the pool it
    # found, not from the one GPU it narrowed itself to
    narrow_devices(study(workers=3, worker=2))
    assert devices.os.environ["CUDA_VISIBLE_DEVICES"] == "2"


def test_narrowing_after_cuda_started_keeps_the_gpus_and_says_so(fresh_process, caplog):
    """CUDA_VISIBLE_DEVICES is read when CUDA starts: changed later, it has no effect. The
    process keeps its GPUs, a warning says so, and the trials record the GPUs it really has."""
    torch = SimpleNamespace(
        cuda=SimpleNamespace(is_initialized=lambda: True), get_num_threads=lambda: 3
    )
    fresh_process.setitem(sys.modules, "torch", torch)
    fresh_process.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with caplog.at_level(logging.INFO, logger="harness"):
        chosen = narrow_devices(study(workers=2, worker=1))
    assert devices.os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert any("CUDA started in this process" in r.getMessage() for r in caplog.records)
    assert chosen.gpus == ("0", "1")
    assert devices.current() == {"gpus": ["0", "1"], "threads": 3, "world_size": 1}


def test_a_study_run_in_process_records_what_the_process_sees(fresh_process, machine):
    machine(0)
    fresh_process.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    recorded = devices.current()
    assert recorded["gpus"] == [] and recorded["world_size"] == 1


def test_the_machines_gpus_are_counted_without_starting_cuda():
    """Here (a CPU, or a GPU machine): counting leaves CUDA unstarted in this process, so that
    the narrowing that follows still takes effect."""
    import torch

    if torch.cuda.is_initialized():
        pytest.skip("CUDA was started in this test process by an earlier test")
    count = devices._machine_gpus()
    assert not torch.cuda.is_initialized()
    assert count == torch.cuda.device_count()  # torch's own count (NVML first, as ours)


@pytest.mark.integration  # two worker processes of `python -m harness.sweep study.workers=2`
@pytest.mark.slow  # each loads the tiny model and trains it (~1 min on 2 shared cores)
def test_each_worker_process_trains_on_the_gpu_it_was_given(sweep_overrides, tmp_path):
    """A fake CUDA_VISIBLE_DEVICES=0,1 on a machine without GPUs: each worker narrows itself to
    its GPU (logged, recorded on its trials) and, finding no GPU, trains on the CPU."""
    storage = next(o for o in sweep_overrides if o.startswith("study.storage=")).split("=", 1)[1]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.sweep",
            *sweep_overrides,
            "study.workers=2",
            "study.n_trials=2",
            "train.num_train_epochs=1",
            "train.evals_per_epoch=1",
            "pruner=none",
            "report.enabled=false",
        ],
        cwd=ROOT,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "0,1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    launched = {
        int(pid): gpu
        for _, pid, gpu in re.findall(r"worker (\d): pid (\d+), GPU (\d)", result.stderr)
    }
    assert sorted(launched.values()) == ["0", "1"], result.stderr[-3000:]
    for index in (0, 1):  # each worker's own line, from the worker
        assert f"[worker {index}] [harness] worker {index}: GPU {index}" in result.stderr
    studies = optuna.get_all_study_summaries(storage)
    (summary,) = studies
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    assert len(trials) == 2 and all(t.state.name == "COMPLETE" for t in trials)
    for trial in trials:
        pid = trial.user_attrs[schema.WORKER_ATTR]["pid"]
        assert trial.user_attrs[schema.DEVICES_ATTR]["gpus"] == [launched[pid]]
        assert trial.user_attrs[schema.DEVICES_ATTR]["world_size"] == 1
