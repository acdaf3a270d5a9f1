"""train.cpu_dropout: the fast CPU dropout's masks (rate, scale, seeding, gradient), the swap
of a model's dropout modules, and a fine-tune that uses it or torch's as configured."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification, TrainerCallback

from harness.base.errors import ConfigError
from harness.study import prepare_study, validate_config
from harness.train.arguments import harness_options
from harness.train.dropout import FastCpuDropout, keep_mask, use_fast_cpu_dropout
from harness.train.finetune import finetune


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_a_mask_drops_at_the_rate_and_scales_the_rest(p):
    torch.manual_seed(0)
    mask = keep_mask(torch.Size([1000, 1000]), p, torch.float32)
    dropped = (mask == 0).float().mean().item()
    # binomial sd over 1e6 elements is <= 0.0005; the 16-bit rate is within 1/65536 of p
    assert dropped == pytest.approx(p, abs=0.0025)
    assert mask.unique().tolist() == [0.0, pytest.approx(1 / (1 - p))]
    # elements are independent: neighbours (which share a 64-bit draw) are dropped together at
    # the product of the rates
    pairs = ((mask[:, 0::2] == 0) & (mask[:, 1::2] == 0)).float().mean().item()
    assert pairs == pytest.approx(p * p, abs=0.004)


def test_the_seed_governs_the_masks_as_it_does_torch_dropout():
    layer = FastCpuDropout(0.3)
    x = torch.ones(64, 48)
    torch.manual_seed(7)
    first, second = layer(x), layer(x)
    torch.manual_seed(7)
    assert torch.equal(layer(x), first) and torch.equal(layer(x), second)
    assert not torch.equal(first, second)  # the generator moves on


def test_the_gradient_is_the_mask():
    layer = FastCpuDropout(0.2)
    x = torch.randn(32, 40, requires_grad=True)
    torch.manual_seed(1)
    y = layer(x)
    y.sum().backward()
    torch.manual_seed(1)
    mask = keep_mask(x.shape, 0.2, x.dtype)
    torch.testing.assert_close(y, x.detach() * mask)
    torch.testing.assert_close(x.grad, mask)


def test_not_training_and_the_extremes_are_torch_dropout():
    x = torch.randn(16, 8)
    layer = FastCpuDropout(0.4).eval()
    assert torch.equal(layer(x), x)
    assert torch.equal(FastCpuDropout(0.0)(x), x)
    assert torch.equal(FastCpuDropout(1.0)(x), torch.zeros_like(x))
    inplace = FastCpuDropout(0.5, inplace=True)
    y = x.clone()
    assert inplace(y) is y and bool((y == 0).any())


def test_every_dropout_of_a_lora_model_is_swapped_keeping_its_rate_and_mode():
    from peft import LoraConfig, get_peft_model

    config = BertConfig(
        vocab_size=100,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        hidden_dropout_prob=0.15,
    )
    model = get_peft_model(
        BertForSequenceClassification(config),
        LoraConfig(r=2, lora_dropout=0.05, target_modules=["query", "value"]),
    )
    model.eval()
    before = [(n, m.p) for n, m in model.named_modules() if isinstance(m, nn.Dropout)]
    assert any("lora_dropout" in n for n, _ in before)
    assert use_fast_cpu_dropout(model) == len(before)
    after = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Dropout)]
    assert [(n, m.p) for n, m in after] == before
    assert all(type(m) is FastCpuDropout and not m.training for _, m in after)
    assert use_fast_cpu_dropout(model) == 0  # nothing left to swap


class DropoutKinds(TrainerCallback):
    """The classes of the model's dropout modules when training starts."""

    kinds: set[type] = set()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.kinds = {type(m) for m in model.modules() if isinstance(m, nn.Dropout)}


@pytest.mark.integration
@pytest.mark.parametrize(("setting", "kind"), [("fast", FastCpuDropout), ("torch", nn.Dropout)])
def test_a_fine_tune_trains_with_the_configured_dropout(setting, kind, compose, sweep_overrides):
    cfg = compose([*sweep_overrides, f"train.cpu_dropout={setting}", "train.num_train_epochs=1"])
    prepared = prepare_study(cfg, validate_config(cfg))
    seen = DropoutKinds()
    result = finetune(cfg, prepared.base, prepared.datasets, prepared.metrics, callbacks=[seen])
    assert seen.kinds == {kind} and result.steps > 0


def test_an_unknown_setting_names_the_field(compose):
    cfg = compose(["train.cpu_dropout=philox"])
    with pytest.raises(ConfigError, match=r"train\.cpu_dropout.*fast, torch"):
        harness_options(cfg.train)
