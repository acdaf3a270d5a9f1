"""Secrets: a password in the storage or tracking URL never shows, in output, MLflow, files or
errors. Model code: nothing from a model folder runs unless model.trust_remote_code=true."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from harness.base.errors import ConfigError
from harness.base.secrets import mask, masked_output, register
from harness.study import run_sweep

ROOT = Path(__file__).resolve().parents[2]


def test_mask_hides_url_passwords_and_registered_secrets(capsys):
    assert mask("postgresql://user:pa55word@db:5432/x") == "postgresql://user:***@db:5432/x"
    assert mask("http://u:p%40ss@host/") == "http://u:***@host/"
    assert mask("sqlite:///mlruns/mlflow.db") == "sqlite:///mlruns/mlflow.db"
    # a password holding '/', as SQLAlchemy (Optuna's storage) reads the URL
    assert mask("postgresql://u:ab/cd@host/db") == "postgresql://u:***@host/db"
    register(["postgresql://u:slash/ed-pw@host/db"])
    assert mask("password slash/ed-pw rejected") == "password *** rejected"
    register(["mysql://me:hunter-22@h/db"])
    assert mask("auth failed for hunter-22") == "auth failed for ***"  # without the URL around it
    with masked_output(["postgresql://a:tops3cret@h/db"]):
        print("connecting with tops3cret")
        logging.getLogger("harness.test").warning("url postgresql://a:tops3cret@h/db")
    out = capsys.readouterr()
    assert "tops3cret" not in out.out + out.err and "***" in out.out


def test_output_nobody_reads_is_dropped_not_raised(monkeypatch):
    """A worker whose launcher died writes into a broken pipe: the lines are dropped, so the
    trial's record is not cut short by a BrokenPipeError."""
    read, write = os.pipe()
    os.close(read)
    broken = os.fdopen(write, "w")
    monkeypatch.setattr(sys, "stderr", broken)
    with masked_output([]):
        print("trial 3 interrupted", file=sys.stderr, flush=True)
        print("and more", file=sys.stderr, flush=True)
    with pytest.raises(BrokenPipeError):  # what the harness's output no longer raises
        print("unwrapped", file=broken, flush=True)
    monkeypatch.undo()
    with contextlib.suppress(BrokenPipeError):
        broken.close()


def _everything_in_sqlite(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(str(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in tables)


def _everything_in_postgres(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return "\n".join(str(conn.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables)


def _everything_in_files(folder: Path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace")
                     for p in folder.rglob("*") if p.is_file())


def test_a_storage_password_never_shows_anywhere(sweep_overrides, tmp_path, postgres_database,
                                                 compose):
    secret = f"s3c/ret-{uuid.uuid4().hex[:12]}"  # '/' in a password is legal for SQLAlchemy
    database = postgres_database("secrets")
    storage = f"postgresql://postgres:{secret}@127.0.0.1:5432/{database}"  # trust auth: accepted
    overrides = [o for o in sweep_overrides if not o.startswith("study.storage=")]
    overrides += [f"study.storage={storage}", "study.n_trials=1", "pruner=none",
                  "train.num_train_epochs=1"]
    result = subprocess.run([sys.executable, "-m", "harness.sweep", *overrides], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "postgresql://postgres:***@127.0.0.1:5432/" in result.stdout  # masked, not dropped
    places = {
        "stdout and stderr": result.stdout + result.stderr,
        "MLflow store (params, tags, metrics)": _everything_in_sqlite(tmp_path / "mlruns" /
                                                                      "mlflow.db"),
        "MLflow artifacts (config.yaml included)": _everything_in_files(tmp_path / "mlruns"),
        "checkpoints": _everything_in_files(tmp_path / "sweeps"),
        "Optuna storage": _everything_in_postgres(
            f"postgresql://postgres@127.0.0.1:5432/{database}"),
    }
    for place, text in places.items():
        assert secret not in text, place
    assert "postgresql://postgres:***@" in places["MLflow artifacts (config.yaml included)"]

    # the same URL to a server that is not there: the error masks it too
    bad = f"postgresql://postgres:{secret}@127.0.0.1:1/{database}"
    with pytest.raises(ConfigError) as err:
        run_sweep(compose([*overrides[:-4], f"study.storage={bad}"]))
    assert err.value.field == "study.storage" and secret not in str(err.value)


def test_the_command_line_masks_passwords_under_a_mistyped_key_and_in_tracebacks(
        monkeypatch, capsys):
    from harness import sweep
    from harness.config.command import run_hydra

    secret = f"pw/{uuid.uuid4().hex[:10]}"
    monkeypatch.setattr(sys, "argv", ["harness.sweep", "+sweep=lora",
                                      f"study.storag=postgresql://u:{secret}@h/db"])
    with pytest.raises(SystemExit) as exited:
        sweep.cli()
    out = capsys.readouterr()
    assert exited.value.code == 2 and out.err.startswith("error: study.storag: no such setting")
    assert secret not in out.out + out.err

    def crashes() -> None:  # an error outside the ones the entry points catch
        raise RuntimeError(f"cannot reach http://u:{secret}@mlflow.example:5000/api")

    with pytest.raises(SystemExit) as exited:
        run_hydra(crashes)
    out = capsys.readouterr()
    assert exited.value.code == 1 and "Traceback" in out.err and "RuntimeError" in out.err
    assert "http://u:***@mlflow.example:5000/api" in out.err and secret not in out.err


def _model_with_code(folder: Path, marker: Path, tiny_model_dir: Path) -> Path:
    """A model folder whose config needs its own Python code (which would leave ``marker``)."""
    import shutil

    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="harness-custom", architectures=["CustomModel"], auto_map={
        "AutoConfig": "custom.CustomConfig",
        "AutoModelForSequenceClassification": "custom.CustomModel",
    })
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "custom.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('code from the model folder ran')\n"
        "from transformers import BertConfig, BertForSequenceClassification\n\n\n"
        "class CustomConfig(BertConfig):\n    model_type = 'harness-custom'\n\n\n"
        "class CustomModel(BertForSequenceClassification):\n    config_class = CustomConfig\n"
    )
    return folder


def test_model_code_runs_only_when_the_user_opts_in(sweep_overrides, tmp_path, tiny_model_dir,
                                                    compose):
    from harness.train.model import load_base_model, load_tokenizer

    marker = tmp_path / "ran.txt"
    folder = _model_with_code(tmp_path / "custom-model", marker, tiny_model_dir)
    overrides = [o for o in sweep_overrides if not o.startswith("model.name_or_path=")]
    overrides.append(f"model.name_or_path={folder}")
    with pytest.raises(ConfigError) as err:
        run_sweep(compose(overrides))
    assert err.value.field == "model.trust_remote_code"
    assert "runs only with model.trust_remote_code=true" in str(err.value)
    assert not marker.exists()  # refused before any of its code ran

    cfg = compose([*overrides, "model.trust_remote_code=true"]).model
    base = load_base_model(cfg, ["a", "b"], load_tokenizer(cfg), seed=0)
    assert marker.exists() and type(base.model).__name__ == "CustomModel"
