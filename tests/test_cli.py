"""Bad input through the command line: one clear line naming the field or file, a non-zero exit,
and no study, no MLflow run created."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose

from harness.errors import ConfigError
from harness.study import run_sweep

ROOT = Path(__file__).resolve().parents[1]


def cli(overrides: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.sweep", *overrides], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def nothing_created(tmp_path: Path) -> None:
    study_db = tmp_path / "sweeps" / "optuna.db"
    assert not study_db.exists() or not _rows(study_db, "studies")
    mlflow_db = tmp_path / "mlruns" / "mlflow.db"
    assert not mlflow_db.exists() or not _rows(mlflow_db, "runs")


def _rows(db: Path, table: str) -> list:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT * FROM {table}").fetchall()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("search_space={train.learning_rate: {low: 1.0}}",
         "error: search_space.train.learning_rate: low (1.0) must be less than high"),
        ("data.train_file=/nonexistent/train.csv", "error: data.train_file: file "
                                                   "'/nonexistent/train.csv' does not exist"),
        ("model.name_or_path=/nonexistent/model", "error: model.name_or_path: folder "
                                                  "'/nonexistent/model' does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_created(sweep_overrides, tmp_path, override,
                                                          expected):
    key = override.split("=", 1)[0]
    overrides = [o for o in sweep_overrides if not o.startswith(key + "=")] + [override]
    result = cli(overrides)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and errors[0].startswith(expected), result.stderr
    assert "Traceback" not in result.stderr
    nothing_created(tmp_path)


def test_an_unknown_sweep_is_refused_with_the_options(tmp_path):
    result = cli(["+sweep=nope", f"study.storage=sqlite:///{tmp_path}/sweeps/optuna.db"])
    assert result.returncode != 0
    assert "sweep/nope" in result.stderr and "lora" in result.stderr
    nothing_created(tmp_path)


def test_no_sweep_asks_for_one(tmp_path):
    result = cli([f"study.storage=sqlite:///{tmp_path}/sweeps/optuna.db"])
    assert result.returncode == 2 and "+sweep=NAME" in result.stderr


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["++search_space={train.nope: {type: float, low: 0, high: 1}}"],
         "search_space.train.nope"),
        (["search_space={peft.config.r: {choices: []}}"], "search_space.peft.config.r"),
        (["search_space={train.learning_rate: {low: 0.0}}"], "search_space.train.learning_rate"),
        (["data.text_column=body"], "data.text_column"),
        (["data.label_names=[negative,positive]"], "data.label_names"),
        (["study.metric=f2"], "study.metric"),
        (["+train.not_an_argument=1"], "train.not_an_argument"),
        (["peft.config.target_modules=[no_such_layer]"], "peft.config"),
        (["sampler._target_=optuna.samplers.NoSuchSampler"], "sampler"),
    ],
)
def test_bad_input_in_process_names_the_field(sweep_overrides, tmp_path, overrides, field):
    with pytest.raises(ConfigError) as err:
        run_sweep(compose([*sweep_overrides, *overrides]))
    assert err.value.field == field
    nothing_created(tmp_path)
