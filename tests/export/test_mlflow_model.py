"""The registered export is an MLflow model that ``mlflow models serve`` serves from the
registry: a prompt-tuning adapter (it cannot be merged) with the base model it needs, answering
``POST /invocations`` with the labels ``harness.predict`` gives for the exported folder."""

from __future__ import annotations

import pytest

from harness.export import export_model
from harness.export.predict import predict
from harness.study import run_sweep
from harness.train.checkpoints import load_checkpoint
from tests.helpers.servers import mlflow_models_serve, post_json

pytestmark = pytest.mark.integration  # a sweep, its MLflow model loaded back

TEXTS = ["what a wonderful happy day", "the worst movie, so boring", "a blue table on tuesday"]


@pytest.fixture(scope="module")
def registered(tmp_path_factory, tiny_model_dir, sentiment_files, compose):
    """A one-trial prompt-tuning study of the tiny model, exported and registered."""
    tmp = tmp_path_factory.mktemp("served")
    overrides = [
        "+sweep=prompt",
        f"model.name_or_path={tiny_model_dir}",
        "model.name=tiny",
        "data=files",
        f"data.train_file={sentiment_files['train']}",
        f"data.validation_file={sentiment_files['validation']}",
        "data.max_train_samples=64",
        f"study.storage=sqlite:///{tmp}/optuna.db",
        f"study.output_dir={tmp}/out",
        f"tracking.uri=sqlite:///{tmp}/mlflow.db",
        f"tracking.artifact_location={tmp}/mlruns",
        "study.n_trials=1",
        "pruner=none",
        "train.num_train_epochs=1",
        "train.evals_per_epoch=1",
        "display.progress=false",
        "report.enabled=false",
        "final.seeds=0",
    ]
    run_sweep(compose(overrides))
    cfg = compose([*overrides, f"export.dir={tmp}/export", "export.register=true"])
    exported = export_model(cfg)
    return cfg, exported


def test_mlflow_models_serve_answers_invocations_with_the_adapters_labels(
    registered, tmp_path, monkeypatch
):
    import mlflow.pyfunc
    import torch

    cfg, exported = registered
    assert not exported.merged and exported.registered == "model 'tiny-files-prompt' version 1"
    model, tokenizer = load_checkpoint(exported.folder)
    expected = [p.label for p in predict(model, tokenizer, TEXTS, int(cfg.data.max_length))]
    # the registered model is the exported one: base model + adapter, the same logits
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(cfg.tracking.uri))
    served = mlflow.pyfunc.load_model("models:/tiny-files-prompt/1").get_raw_model()
    encoded = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(served(**encoded).logits, model(**encoded).logits)
    with mlflow_models_serve(
        "models:/tiny-files-prompt/1", str(cfg.tracking.uri), tmp_path
    ) as base:
        answer = post_json(f"{base}/invocations", {"inputs": TEXTS})
        assert answer == {"predictions": expected}
        table = post_json(
            f"{base}/invocations",
            {"dataframe_split": {"columns": ["text"], "data": [[t] for t in TEXTS]}},
        )
        assert table == {"predictions": expected}
