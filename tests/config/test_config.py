"""Every config option composes, resolves and passes the cheap validation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from harness.study import validate_config
from tests.helpers.configs import CONF

# Options that need a value the user must give.
REQUIRED = {
    ("data", "files"): ["data.train_file=train.csv"],
    ("model", "hub"): ["model.name_or_path=bert-base-uncased"],
    ("pruner", "threshold"): ["pruner.lower=0.5"],
}
# The sweep each option is tried with (the LoRA sweep searches LoRA's own settings).
SWEEP_FOR = {
    ("peft", "none"): "full",
    ("peft", "prefix"): "prefix",
    ("peft", "prompt"): "prompt",
    ("peft", "ia3"): "ia3",
}
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())
OPTIONS = [(g, o.stem) for g in GROUPS for o in sorted((CONF / g).glob("*.yaml"))]
ADDED = {"sizing"}  # groups outside the defaults list: appended (+sizing=gpu)


def test_every_group_has_options():
    assert {"model", "data", "peft", "train", "sampler", "pruner", "tracking", "sweep"} <= set(
        GROUPS
    )


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_validates(group, option, compose):
    sweep = option if group == "sweep" else SWEEP_FOR.get((group, option), "lora")
    plus = "+" if group in ADDED else ""
    overrides = [f"+sweep={sweep}"] + ([] if group == "sweep" else [f"{plus}{group}={option}"])
    overrides += REQUIRED.get((group, option), [])
    cfg = compose(overrides)
    OmegaConf.resolve(cfg)  # every interpolation resolves
    validate_config(cfg)  # search space, study settings, sampler and pruner instantiate


def test_sweeps_choose_the_method_and_name_the_study(compose):
    lora, full = compose(["+sweep=lora"]), compose(["+sweep=full"])
    assert (lora.peft.method, lora.study.name) == ("lora", "minilm-vader-lora")
    assert (full.peft.method, full.study.name) == ("none", "minilm-vader-full")
    assert full.peft.config is None


def test_hub_options_derive_short_names(compose):
    cfg = compose(
        ["+sweep=lora", "model=hub", "model.name_or_path=openai-community/gpt2", "data=hub"]
    )
    assert cfg.model.name == "gpt2"
    assert cfg.study.name == "gpt2-tweet_sentiment_extraction-lora"


def test_defaults_are_the_embedded_model_and_data(compose):
    cfg = compose(["+sweep=lora"])
    assert Path(cfg.model.name_or_path, "config.json").is_file()  # inside the installed wheel
    assert cfg.data.source._target_ == "harness.data.sources.vader_tweets"
    assert cfg.tracking.uri == "sqlite:///mlruns/mlflow.db"
    assert cfg.study.storage.startswith("sqlite:///sweeps/")


def test_help_lists_the_config_groups():
    out = subprocess.run(
        [sys.executable, "-m", "harness.sweep", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "harness.sweep" in out and "+sweep=NAME" in out
    for group in ("model", "data", "peft", "sampler", "pruner", "sweep"):
        assert f"{group}:" in out


@pytest.mark.parametrize("precision", ["auto", "bf16", "fp16", "no"])
def test_mixed_precision_maps_to_training_arguments(tmp_path, precision, compose):
    import torch

    from harness.base.errors import ConfigError
    from harness.train.arguments import cpu_has_bf16, training_arguments

    train = compose(["+sweep=lora", f"train.mixed_precision={precision}"]).train
    gpu = torch.cuda.is_available()
    runs_here = gpu or precision != "fp16" and (precision != "bf16" or cpu_has_bf16())
    if not runs_here:  # fp16 on a CPU; bf16 on a CPU without bf16 instructions
        with pytest.raises(ConfigError, match=f"train.mixed_precision: {precision} needs a GPU"):
            training_arguments(train, 100, str(tmp_path))
        return
    args = training_arguments(train, 100, str(tmp_path))
    if precision == "auto":  # bf16 where the GPU or CPU has it, fp16 on other GPUs, else none
        bf16 = torch.cuda.is_bf16_supported() if gpu else cpu_has_bf16()
        assert (args.bf16, args.fp16) == (bf16, gpu and not bf16)
        assert args.use_cpu == (bf16 and not gpu)
    else:
        assert (args.bf16, args.fp16) == (precision == "bf16", precision == "fp16")


def test_mixed_precision_is_checked(tmp_path, compose):
    from harness.base.errors import ConfigError
    from harness.train.arguments import training_arguments

    with pytest.raises(ConfigError, match="train.mixed_precision: must be one of auto, bf16"):
        training_arguments(
            compose(["+sweep=lora", "train.mixed_precision=fp8"]).train, 100, str(tmp_path)
        )
    with pytest.raises(ConfigError, match="not both"):
        training_arguments(
            compose(["+sweep=lora", "train.mixed_precision=bf16", "+train.fp16=true"]).train,
            100,
            str(tmp_path),
        )
