"""The registered export is an MLflow model that ``mlflow models serve`` serves from the
registry: a prompt-tuning adapter (it cannot be merged) with the base model it needs, answering
``POST /invocations`` with the labels ``harness.predict`` gives for the exported folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from harness.export import export_model
from harness.export.predict import predict
from harness.study import run_sweep
from harness.train.checkpoints import load_checkpoint
from tests.helpers.servers import free_port

TEXTS = ["what a wonderful happy day", "the worst movie, so boring", "a blue table on tuesday"]


@pytest.fixture(scope="module")
def registered(tmp_path_factory, tiny_model_dir, sentiment_files, compose):
    """A one-trial prompt-tuning study of the tiny model, exported and registered."""
    tmp = tmp_path_factory.mktemp("served")
    overrides = [
        "+sweep=prompt", f"model.name_or_path={tiny_model_dir}", "model.name=tiny",
        "data=files", f"data.train_file={sentiment_files['train']}",
        f"data.validation_file={sentiment_files['validation']}", "data.max_train_samples=64",
        f"study.storage=sqlite:///{tmp}/optuna.db", f"study.output_dir={tmp}/out",
        f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"tracking.artifact_location={tmp}/mlruns",
        "study.n_trials=1", "pruner=none", "train.num_train_epochs=1", "train.evals_per_epoch=1",
        "display.progress=false", "report.enabled=false", "final.seeds=0",
    ]
    run_sweep(compose(overrides))
    cfg = compose([*overrides, f"export.dir={tmp}/export", "export.register=true"])
    exported = export_model(cfg)
    return cfg, exported


def _get(url: str, timeout: float = 2.0) -> int:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_mlflow_models_serve_answers_invocations_with_the_adapters_labels(registered, tmp_path,
                                                                         monkeypatch):
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
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    bin_dir = Path(sys.executable).parent  # as in an activated venv: the server runs uvicorn
    env = {**os.environ, "MLFLOW_TRACKING_URI": str(cfg.tracking.uri),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    server = subprocess.Popen(
        [str(bin_dir / "mlflow"), "models", "serve",
         "-m", "models:/tiny-files-prompt/1", "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-4000:]
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-4000:]
            try:
                if _get(f"{base}/ping") == 200:
                    break
            except OSError:
                time.sleep(1)
        answer = _post(f"{base}/invocations", {"inputs": TEXTS})
        assert answer == {"predictions": expected}
        table = _post(f"{base}/invocations",
                      {"dataframe_split": {"columns": ["text"], "data": [[t] for t in TEXTS]}})
        assert table == {"predictions": expected}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
