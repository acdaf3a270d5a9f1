"""Per-parameter learning rates (layer-wise decay, LoRA+) and re-initialised top layers, on the
tiny BERT with the real Trainer."""

from __future__ import annotations

import pytest
import torch
from transformers import TrainerCallback

from harness.base.errors import ConfigError
from harness.study import prepare_study, validate_config
from harness.train.finetune import finetune
from harness.train.model import build_trial_model
from harness.train.optimizer import layer_of, lr_scales, reinit_top_layers


class GroupRates(TrainerCallback):
    """Each trainable parameter's learning rate in the optimizer when training began."""

    def __init__(self) -> None:
        self.rates: dict[int, float] = {}

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        for group in optimizer.param_groups:
            for param in group["params"]:
                self.rates[id(param)] = group["lr"]


def prepared_for(compose, overrides, *extra):
    cfg = compose([*overrides, *extra])
    return prepare_study(cfg, validate_config(cfg))


def test_layer_indices_of_the_families():
    assert layer_of("bert.encoder.layer.3.attention.self.query.weight") == 3
    assert (
        layer_of("base_model.model.bert.encoder.layer.0.attention.self.query.lora_B.default.weight")
        == 0
    )
    assert layer_of("transformer.h.11.attn.c_attn.weight") == 11
    assert layer_of("model.layers.7.self_attn.q_proj.weight") == 7
    assert layer_of("classifier.weight") is None


def test_layer_decay_scales_each_layer_below_the_top(compose, sweep_overrides):
    overrides = ["+sweep=full" if o == "+sweep=lora" else o for o in sweep_overrides]
    prepared = prepared_for(compose, overrides)
    model = build_trial_model(prepared.base, prepared.cfg.peft, 0)
    depth = 1 + max(layer_of(n) for n, _ in model.named_parameters() if layer_of(n) is not None)
    scales = lr_scales(model, 0.5, None)
    for name, scale in scales.items():
        index = layer_of(name)
        if index is not None:
            assert scale == pytest.approx(0.5 ** (depth - 1 - index)), name
        elif "embeddings" in name:
            assert scale == pytest.approx(0.5**depth), name
        else:  # pooler and classifier: the full rate
            assert scale == 1.0, name


@pytest.mark.integration  # trains the tiny model for real
def test_the_trainer_gets_a_rate_per_layer_and_loraplus_rates_for_b(
    compose, sweep_overrides, tmp_path
):
    prepared = prepared_for(
        compose,
        sweep_overrides,
        "train.learning_rate=0.01",
        "train.num_train_epochs=1",
        "train.layer_lr_decay=0.5",
        "train.loraplus_lr_ratio=4",
    )
    rates = GroupRates()
    captured = {}

    class Names(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            captured.update({n: id(p) for n, p in model.named_parameters() if p.requires_grad})

    result = finetune(
        prepared.cfg, prepared.base, prepared.datasets, prepared.metrics, callbacks=[rates, Names()]
    )
    assert result.value is not None
    top = max(layer_of(n) for n in captured if layer_of(n) is not None)
    seen = set()
    for name, ident in captured.items():
        expected = 0.01
        if layer_of(name) is not None:
            expected *= 0.5 ** (top - layer_of(name))
        if ".lora_B." in name:
            expected *= 4
        assert rates.rates[ident] == pytest.approx(expected), name
        seen.add(round(rates.rates[ident], 8))
    assert len(seen) >= 3  # B and A of two layers at least


def test_reinit_layers_renews_the_top_layers_only(compose, sweep_overrides):
    overrides = ["+sweep=full" if o == "+sweep=lora" else o for o in sweep_overrides]
    prepared = prepared_for(compose, overrides)
    model = build_trial_model(prepared.base, prepared.cfg.peft, 0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(0)
    indices = reinit_top_layers(model, 1)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(layer_of(k) == indices[0] for k in changed)
    with pytest.raises(ConfigError, match="train.reinit_layers"):
        reinit_top_layers(model, 99)


def test_options_are_checked(compose, sweep_overrides):
    with pytest.raises(ConfigError, match=r"train.layer_lr_decay.*\(0, 1\]"):
        prepared_for(compose, sweep_overrides, "train.layer_lr_decay=1.5")
    with pytest.raises(ConfigError, match="train.loraplus_lr_ratio"):
        prepared_for(compose, sweep_overrides, "train.loraplus_lr_ratio=-1")
    prepared = prepared_for(compose, sweep_overrides, "train.reinit_layers=1")
    with pytest.raises(ConfigError, match="train.reinit_layers.*full fine-tuning"):
        finetune(prepared.cfg, prepared.base, prepared.datasets, prepared.metrics)
