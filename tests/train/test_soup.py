"""Weight averages of checkpoints (a soup) and seeds that start from the same weights
(``init_seed``), on the tiny BERT."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback

from harness.study import prepare_study, validate_config
from harness.train.finetune import finetune
from harness.train.soup import average_checkpoints


def checkpoint(folder, tensors):
    folder.mkdir()
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "labels.json").write_text("{}")
    return folder


def test_the_average_of_two_checkpoints(tmp_path):
    a = checkpoint(tmp_path / "a", {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor([3])})
    b = checkpoint(tmp_path / "b", {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor([5])})
    soup = average_checkpoints([a, b], tmp_path / "soup")
    weights = load_file(str(soup / "adapter_model.safetensors"))
    assert torch.equal(weights["w"], torch.tensor([2.0, 4.0]))
    assert torch.equal(weights["n"], torch.tensor([3]))  # not a float: the first one's
    assert (soup / "labels.json").is_file()
    c = checkpoint(tmp_path / "c", {"w": torch.tensor([1.0, 2.0, 3.0]), "n": torch.tensor([3])})
    with pytest.raises(ValueError, match="names or shapes"):
        average_checkpoints([a, c], tmp_path / "bad")


class FirstWeights(TrainerCallback):
    def __init__(self):
        self.start, self.end = {}, {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.end = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.integration  # trains the tiny model for real
def test_data_order_seeds_start_from_the_same_weights(compose, sweep_overrides):
    """final.vary=data_order: other seeds (data order, dropout), the same starting adapter and
    head; without init_seed the adapter starts elsewhere."""
    cfg = compose([*sweep_overrides, "train.num_train_epochs=1"])
    prepared = prepare_study(cfg, validate_config(cfg))
    runs = {}
    for name, seed, init_seed in (("a", 43, 42), ("b", 44, 42), ("c", 44, None)):
        cfg.train.seed = seed
        weights = FirstWeights()
        finetune(
            cfg,
            prepared.base,
            prepared.datasets,
            prepared.metrics,
            callbacks=[weights],
            init_seed=init_seed,
        )
        runs[name] = weights
    lora_a = [n for n in runs["a"].start if "lora_A" in n]
    head = [n for n in runs["a"].start if "classifier" in n]
    assert lora_a and head
    assert all(torch.equal(runs["a"].start[n], runs["b"].start[n]) for n in runs["a"].start)
    assert not all(torch.equal(runs["a"].end[n], runs["b"].end[n]) for n in runs["a"].end)
    assert not all(torch.equal(runs["b"].start[n], runs["c"].start[n]) for n in lora_a)
    assert all(torch.equal(runs["b"].start[n], runs["c"].start[n]) for n in head)
