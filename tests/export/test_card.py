"""The exported model card is a huggingface_hub ModelCard: parsed back with the library, its
metadata names the base model's hub id and holds the evaluation results."""

from __future__ import annotations

import pytest
from huggingface_hub import ModelCard

from harness.export import export_model
from harness.export.card import base_model_id, model_card
from tests.helpers.sweeps import finished_sweep


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_model_dir, sentiment_files):
    return finished_sweep(
        tmp_path_factory,
        "card",
        tiny_model_dir,
        sentiment_files,
        "study.n_trials=1",
        "report.enabled=false",
        "pruner=none",
        "train.num_train_epochs=1",
    )


@pytest.mark.integration
def test_the_exported_card_parses_back_with_huggingface_hub(finished, tmp_path, compose):
    overrides, summary = finished
    out = tmp_path / "export"
    export_model(
        compose(
            [*overrides, f"export.dir={out}", "model.hub_id=sentence-transformers/all-MiniLM-L6-v2"]
        )
    )
    card = ModelCard.load(out / "README.md")
    data = card.data
    assert data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert data.base_model_relation == "finetune"  # LoRA merged into the weights
    assert data.library_name == "transformers" and data.pipeline_tag == "text-classification"
    assert {"harness", "optuna", "lora"} <= set(data.tags)
    results = {(r.dataset_split, r.metric_type): r for r in data.eval_results}
    assert results[("validation", "accuracy")].metric_value == pytest.approx(summary.best_value)
    assert results[("validation", "accuracy")].task_type == "text-classification"
    assert results[("validation", "accuracy")].dataset_name == "files"
    assert {split for split, _ in results} == {"validation"}  # no test figures recorded
    assert {"accuracy", "f1"} <= set(data.metrics)
    for text in (
        "## Hyperparameters",
        "`train.learning_rate`",
        "## Use",
        "AutoModelForSequenceClassification.from_pretrained(folder)",
        "merged into the weights",
    ):
        assert text in card.text, text
    # a local model folder without a hub id: no base_model claimed (never a path)
    bare = tmp_path / "bare"
    export_model(compose([*overrides, f"export.dir={bare}", "model.hub_id=null"]))
    assert ModelCard.load(bare / "README.md").data.base_model is None


def test_a_card_shows_test_results_and_a_separate_adapter(tmp_path):
    info = {
        "study": "s",
        "trial": 3,
        "value": 0.8,
        "metric": "accuracy",
        "direction": "maximize",
        "is_best": True,
        "params": {"train.learning_rate": 1e-3},
        "evaluations": {"validation": {"accuracy": 0.8, "f1": 0.7}, "test": {"accuracy": 0.75}},
        "method": "prompt",
        "merged": False,
        "peft_type": "PROMPT_TUNING",
        "base_model": "google-bert/bert-base-uncased",
        "model_name": "bert-base-uncased",
        "data": {
            "name": "tweets",
            "source": "a hub dataset",
            "sizes": {"train": 10},
            "hub_id": "mteb/tweet_sentiment_extraction",
        },
        "labels": ["negative", "positive"],
        "registered": "model 's' version 2",
    }
    model_card(info).save(tmp_path / "README.md")
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.base_model == "google-bert/bert-base-uncased"
    assert card.data.base_model_relation == "adapter" and card.data.library_name == "peft"
    assert card.data.datasets == ["mteb/tweet_sentiment_extraction"]
    got = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert got == {
        ("validation", "accuracy"): 0.8,
        ("validation", "f1"): 0.7,
        ("test", "accuracy"): 0.75,
    }
    assert {r.dataset_type for r in card.data.eval_results} == {"mteb/tweet_sentiment_extraction"}
    assert "PeftModel.from_pretrained(base, folder)" in card.text
    assert "Registered in MLflow as `model 's' version 2`" in card.text


def test_the_base_model_is_a_hub_id_never_a_local_path(tmp_path):
    assert base_model_id("google-bert/bert-base-uncased", None) == "google-bert/bert-base-uncased"
    assert base_model_id("gpt2", "ignored/when-name-is-a-hub-id") == "gpt2"
    assert (
        base_model_id(str(tmp_path), "sentence-transformers/all-MiniLM-L6-v2")
        == "sentence-transformers/all-MiniLM-L6-v2"
    )
    assert base_model_id(str(tmp_path), None) is None
    assert base_model_id("./models/mine", None) is None
