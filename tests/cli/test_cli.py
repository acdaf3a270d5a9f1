"""Bad input: the field named, no study and no MLflow run created (more in test_bad_input)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.base.errors import ConfigError
from harness.study import run_sweep
from tests.helpers.sweeps import nothing_created

pytestmark = pytest.mark.integration  # the commands in subprocesses

ROOT = Path(__file__).resolve().parents[2]


def cli(overrides: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.sweep", *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_no_sweep_asks_for_one(tmp_path):
    result = cli([f"study.storage=sqlite:///{tmp_path}/sweeps/optuna.db"])
    assert result.returncode == 2 and "+sweep=NAME" in result.stderr


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (
            ["++search_space={train.nope: {type: float, low: 0, high: 1}}"],
            "search_space.train.nope",
        ),
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
def test_bad_input_in_process_names_the_field(bare_overrides, tmp_path, overrides, field, compose):
    with pytest.raises(ConfigError) as err:
        run_sweep(compose([*bare_overrides, *overrides]))
    assert err.value.field == field
    nothing_created(tmp_path)
