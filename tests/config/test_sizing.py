"""The GPU sizing preset (conf/sizing/gpu.yaml): given after a sweep, its values replace the
sweep's CPU sizing; the command line's key=value still wins; every default sweep takes it."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from harness.study import validate_config
from tests.helpers.configs import CONF

SWEEPS = sorted(p.stem for p in (CONF / "sweep").glob("*.yaml"))


def test_sizing_gpu_replaces_the_lora_sweeps_cpu_sizing(compose):
    cpu, gpu = compose(["+sweep=lora"]), compose(["+sweep=lora", "+sizing=gpu"])
    # what caps the CPU run (conf/data/vader.yaml, conf/sweep/lora.yaml) ...
    assert (cpu.data.max_train_samples, cpu.study.n_trials) == (1500, 12)
    assert cpu.train.per_device_train_batch_size == 16
    assert (cpu.study.workers, cpu.study.workers_per_gpu) == (1, 1)
    assert (cpu.final.top_k, cpu.final.seeds) == (1, 2)
    # ... replaced by the preset
    assert gpu.data.max_train_samples is None and gpu.data.max_eval_samples is None
    assert gpu.study.n_trials == 40
    assert gpu.train.per_device_train_batch_size == 32
    assert gpu.train.per_device_eval_batch_size == 256
    assert (gpu.study.workers, gpu.study.workers_per_gpu) == (4, 4)  # one GPU, 4 workers on it
    assert (gpu.final.top_k, gpu.final.seeds) == (2, 3)
    # the rest of the sweep stays: its method, budget, pruner, search space and recipe
    for key in (
        "peft",
        "pruner",
        "search_space",
        "recipe",
        "train.num_train_epochs",
        "train.evals_per_epoch",
        "study.name",
        "study.prune_metric",
    ):
        assert OmegaConf.select(gpu, key) == OmegaConf.select(cpu, key), key


def test_the_command_line_wins_and_workers_follow_workers_per_gpu(compose):
    cfg = compose(["+sweep=lora", "+sizing=gpu", "study.n_trials=60", "study.workers_per_gpu=2"])
    assert cfg.study.n_trials == 60
    assert (cfg.study.workers, cfg.study.workers_per_gpu) == (2, 2)
    assert compose(["+sweep=lora", "+sizing=gpu", "study.workers=8"]).study.workers == 8


def test_the_preset_must_come_after_the_sweep(compose):
    """What the preset's header says: Hydra merges added groups in the order given, so before
    the sweep the sweep's own values win (the documented order is the one that works)."""
    before = compose(["+sizing=gpu", "+sweep=lora"])
    assert before.study.n_trials == 12 and before.train.per_device_train_batch_size == 16
    assert before.data.max_train_samples is None  # the sweep does not set it: the preset's


@pytest.mark.parametrize("sweep", SWEEPS)
def test_every_default_sweep_takes_the_preset(sweep, compose):
    cfg = compose([f"+sweep={sweep}", "+sizing=gpu"])
    OmegaConf.resolve(cfg)
    validate_config(cfg)
    assert cfg.study.n_trials == 40 and cfg.data.max_train_samples is None
    assert cfg.study.workers == cfg.study.workers_per_gpu
