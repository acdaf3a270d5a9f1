"""The evaluation schedule counts the global batch (processes × per-device batch ×
accumulation), as the Trainer does, so that evaluations (the pruner's rungs) fall at the same
share of the budget on 1 GPU, 4 GPUs or a CPU; and the Trainer never enters DataParallel."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from harness.base import devices
from harness.train.arguments import refuse_data_parallel, steps_per_epoch, training_arguments


def train(batch: int, accumulation: int = 1):
    return OmegaConf.create(
        {"per_device_train_batch_size": batch, "gradient_accumulation_steps": accumulation}
    )


def trainer_steps_per_epoch(size: int, batch: int, accumulation: int, world: int) -> int:
    """The Trainer's own count: its update steps per epoch for one rank's dataloader (the
    distributed sampler's share of the data, the last batch partial)."""
    from torch.utils.data import DataLoader, DistributedSampler
    from transformers import Trainer

    sampler = DistributedSampler(range(size), num_replicas=world, rank=0, shuffle=False)
    loader = DataLoader(range(size), batch_size=batch, sampler=sampler)
    stub = SimpleNamespace(
        get_total_train_batch_size=lambda args: batch * accumulation * world,
        get_sp_size=lambda: 1,
        num_examples=lambda loader: size,
    )
    args = SimpleNamespace(
        max_steps=-1, num_train_epochs=1, gradient_accumulation_steps=accumulation
    )
    return int(Trainer.set_initial_training_values(stub, args, loader)[1])


@pytest.mark.parametrize("world", [1, 2, 4])
@pytest.mark.parametrize(
    ("size", "batch", "accumulation"), [(240, 16, 1), (1000, 8, 4), (37, 8, 3)]
)
def test_steps_per_epoch_is_the_trainers_on_the_global_batch(world, size, batch, accumulation):
    ours = steps_per_epoch(train(batch, accumulation), size, world_size=world)
    assert ours == trainer_steps_per_epoch(size, batch, accumulation, world)
    if accumulation == 1:  # one step per global batch
        assert ours == math.ceil(size / (world * batch))


def test_world_size_is_torchruns(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert steps_per_epoch(train(16), 1600) == 100  # one process (a CPU, or one GPU)
    monkeypatch.setenv("WORLD_SIZE", "4")  # torchrun --nproc_per_node=4: one trial, 4 ranks
    assert steps_per_epoch(train(16), 1600) == 25
    assert steps_per_epoch(train(16), 1600, world_size=1) == 100  # given: wins over the env


def test_evaluations_fall_at_the_same_share_of_the_budget_on_any_number_of_gpus(
    monkeypatch, tmp_path, compose
):
    """training_arguments' eval_steps: the samples trained between two evaluations are the same
    (within one global batch) on 1, 2 or 4 processes, so a rung means the same budget."""
    size, evals = 1000, 4
    overrides = [
        "+sweep=lora",
        "train.per_device_train_batch_size=8",
        f"train.evals_per_epoch={evals}",
    ]
    cfg = compose(overrides).train
    samples = {}
    for world in (1, 2, 4):
        monkeypatch.setattr(devices, "world_size", lambda env=None, world=world: world)
        args = training_arguments(cfg, size, str(tmp_path))
        global_batch = world * 8
        samples[world] = args.eval_steps * global_batch
        assert abs(samples[world] - size / evals) <= global_batch
    assert samples[1] == 256 and samples[4] == 256  # 32 steps of 8, 8 steps of 32


def test_data_parallel_is_refused():
    from transformers.training_args import ParallelMode

    refuse_data_parallel(SimpleNamespace(n_gpu=0, parallel_mode=ParallelMode.NOT_PARALLEL))
    refuse_data_parallel(SimpleNamespace(n_gpu=1, parallel_mode=ParallelMode.NOT_PARALLEL))
    refuse_data_parallel(SimpleNamespace(n_gpu=1, parallel_mode=ParallelMode.DISTRIBUTED))
    with pytest.raises(RuntimeError, match=r"2 GPUs .*nn\.DataParallel.*CUDA_VISIBLE_DEVICES"):
        refuse_data_parallel(SimpleNamespace(n_gpu=2, parallel_mode=ParallelMode.NOT_DISTRIBUTED))


def test_a_cpu_trainings_arguments_pass_the_guard(monkeypatch, tmp_path, compose):
    """A fake CUDA_VISIBLE_DEVICES on a machine without a GPU: the CPU, no GPU counted."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    args = training_arguments(compose(["+sweep=lora"]).train, 240, str(tmp_path))
    refuse_data_parallel(args)
    import torch

    if not torch.cuda.is_available():
        assert args.n_gpu == 0 and args.device.type == "cpu"
