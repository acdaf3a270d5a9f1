"""The embedded default: the real all-MiniLM-L6-v2 from its wheel and real VADER tweets."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.embedded, pytest.mark.integration]  # the real MiniLM trains


def test_minilm_trains_a_step_on_real_tweets(monkeypatch, compose):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may come from the hub
    from harness.study import prepare_study, validate_config
    from harness.train.finetune import finetune

    cfg = compose(
        [
            "+sweep=lora",
            "data.max_train_samples=32",
            "data.max_eval_samples=32",
            "train.per_device_train_batch_size=16",
            "+train.max_steps=2",
            "train.evals_per_epoch=1",
        ]
    )
    prepared = prepare_study(cfg, validate_config(cfg))
    assert prepared.label_names == ["negative", "neutral", "positive"]
    assert prepared.base.model.config.num_hidden_layers == 6  # MiniLM-L6
    assert prepared.base.model.num_parameters() > 22_000_000
    before = {n: p.clone() for n, p in prepared.base.model.named_parameters()}

    result = finetune(cfg, prepared.base, prepared.datasets, prepared.metrics)
    assert result.evaluations >= 1 and 0.0 <= result.value <= 1.0
    assert 0 < result.trainable_params < result.total_params
    assert result.train_runtime > 0
    # trials train copies: the study's base weights are untouched
    assert all((p == before[n]).all() for n, p in prepared.base.model.named_parameters())


def test_the_vader_tweets_are_split_stratified_and_cached(compose):
    from harness.data import load_labelled_data

    data = load_labelled_data(compose(["+sweep=lora", "data.max_train_samples=null"]).data)
    assert data.sizes() == {"train": 2940, "validation": 630, "test": 630}
    counts = [data.splits["validation"]["label"].count(i) for i in range(3)]
    # 1,062 / 838 / 2,300 of 4,200 tweets: the same shares in every split
    assert counts == pytest.approx(
        [630 * 1062 / 4200, 630 * 838 / 4200, 630 * 2300 / 4200], abs=1.5
    )
