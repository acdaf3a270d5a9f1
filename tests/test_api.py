"""The Python API (``harness.run``): a study run and resumed from plain Python, its result read
back against the storage; bad input raises ConfigError with the command line's text; a user's
config folder; nothing left behind in the caller's process."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import optuna
import pytest
from hydra.core.global_hydra import GlobalHydra

import harness
from harness.api import compose
from harness.errors import ConfigError
from harness.records import schema
from tests.helpers.fake_finetune import FakeFineTune
from tests.helpers.sweeps import nothing_created

ROOT = Path(__file__).resolve().parents[1]


def without_sweep(overrides: list[str]) -> list[str]:
    """The fixture's overrides less ``+sweep=lora`` (``harness.run``'s first argument)."""
    return [o for o in overrides if not o.startswith("+sweep=")]


def storage_best(result: harness.SweepResult) -> optuna.trial.FrozenTrial:
    return optuna.load_study(study_name=result.study_name, storage=result.storage).best_trial


def process_state() -> dict[str, object]:
    """What a call could leave behind in the caller's process."""
    harness_log = logging.getLogger("harness")
    return {
        "signals": {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)},
        "hydra": GlobalHydra.instance().is_initialized(),
        "handlers": list(harness_log.handlers),
        "level": harness_log.level,
        "propagate": harness_log.propagate,
        "root handlers": list(logging.getLogger().handlers),
        "optuna": optuna.logging.get_verbosity(),
        "environ": dict(os.environ),
        "warnings": list(warnings.filters),
        "streams": (sys.stdout, sys.stderr),
    }


def test_a_new_study_then_a_resume_from_python(sweep_overrides, tmp_path):
    overrides = [*without_sweep(sweep_overrides), "report.enabled=false"]
    before = process_state()
    first = harness.run("lora", [*overrides, "study.n_trials=2"], finetune=FakeFineTune())
    assert process_state() == before
    assert first.complete + first.pruned == 2
    best = storage_best(first)
    assert (first.best_trial, first.best_value, dict(first.best_params)) == (
        best.number,
        best.value,
        best.params,
    )
    study = optuna.load_study(study_name=first.study_name, storage=first.storage)
    assert first.parent_run_id == study.user_attrs[schema.PARENT_RUN_ATTR]
    assert first.final is None  # final.seeds=0 in the fixture
    assert first.best_checkpoint == tmp_path / "sweeps" / "study" / "best"
    assert (first.best_checkpoint / "trial.json").is_file()
    assert "2 of 2 trials finished" in first.summary and str(first) == first.summary
    assert "Resume or extend: python -m harness.sweep +sweep=lora " in first.summary

    # the same call with more trials resumes the same study (the same parent run)
    second = harness.run("lora", [*overrides, "study.n_trials=3"], finetune=FakeFineTune())
    assert process_state() == before
    assert second.study_name == first.study_name
    assert second.parent_run_id == first.parent_run_id
    assert second.complete + second.pruned == 3
    best = storage_best(second)
    assert (second.best_trial, second.best_value, dict(second.best_params)) == (
        best.number,
        best.value,
        best.params,
    )


def test_the_final_stage_choice_from_python(sweep_overrides):
    overrides = [*without_sweep(sweep_overrides), "report.enabled=false", "study.n_trials=2"]
    result = harness.run("lora", [*overrides, "final.seeds=2"], finetune=FakeFineTune())
    study = optuna.load_study(study_name=result.study_name, storage=result.storage)
    record = study.user_attrs[schema.FINAL_ATTR]
    assert result.final is not None
    assert (result.final.trial, result.final.seed) == (record["trial"], record["seed"])
    assert result.final.validation == record["configs"][str(record["trial"])]["mean"]
    assert result.final.test is None  # the small files have no test split
    assert result.final.shipped in ("seed", "soup", "ensemble")
    assert "Chosen configuration: trial" in result.summary


@pytest.mark.integration  # the real fine-tune of the tiny BERT
def test_the_real_fine_tune_from_python_then_load_and_predict(sweep_overrides):
    from harness.checkpoint import load_checkpoint
    from harness.predict import predict

    overrides = [*without_sweep(sweep_overrides), "report.enabled=false"]
    first = harness.run("lora", [*overrides, "study.n_trials=1"])
    assert first.best_trial == storage_best(first).number
    second = harness.run("lora", [*overrides, "study.n_trials=2"])
    assert second.complete + second.pruned == 2
    assert (second.best_trial, dict(second.best_params)) == (
        storage_best(second).number,
        storage_best(second).params,
    )
    assert second.best_checkpoint is not None
    model, tokenizer = load_checkpoint(second.best_checkpoint)
    [prediction] = predict(model, tokenizer, ["what a wonderful day"])
    assert prediction.label in ("negative", "neutral", "positive")


@pytest.mark.parametrize(
    ("sweep", "overrides"),
    [
        ("lora", ["study.n_trials=abc"]),  # a typed setting (Hydra refuses it)
        ("lora", ["study.n_trail=3"]),  # no such setting
        ("lora", ["study.n_trials=-3"]),  # the harness's schema check
        ("nope", []),  # no such sweep
        ("lora", ["study.n_trials=1,2"]),  # a sweep override
    ],
)
def test_bad_input_raises_a_config_error_and_creates_nothing(
    bare_overrides, tmp_path, sweep, overrides
):
    before = process_state()
    with pytest.raises(ConfigError) as err:
        harness.run(sweep, [*without_sweep(bare_overrides), *overrides])
    assert "\n" not in str(err.value)
    assert process_state() == before
    nothing_created(tmp_path)


@pytest.mark.integration  # the command line in a subprocess
@pytest.mark.parametrize(
    ("sweep", "overrides", "config_dir"),
    [
        ("lora", ["study.n_trials=abc"], None),
        ("lora", ["study.n_trail=3"], None),
        ("lora", ["study.n_trials=-3"], None),
        ("nope", [], None),
        ("lora", ["study.storage=postgresql://me:s3cret-pw@db/optuna", "study.n_trials=x"], None),
        ("lora", [], "no-such-folder"),
    ],
)
def test_a_config_error_reads_as_the_command_lines(tmp_path, sweep, overrides, config_dir):
    folder = None if config_dir is None else str(tmp_path / config_dir)
    with pytest.raises(ConfigError) as err:
        harness.run(sweep, overrides, config_dir=folder)
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.sweep",
            *([f"--config-dir={folder}"] if folder else []),
            f"+sweep={sweep}",
            *overrides,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 2
    assert cli.stderr.strip() == f"error: {err.value}"
    assert "s3cret-pw" not in str(err.value)


def test_a_users_config_dir_adds_a_sweep(sweep_overrides, tmp_path):
    own = tmp_path / "my conf" / "sweep"  # a space in the path
    own.mkdir(parents=True)
    (own / "mine.yaml").write_text(
        (ROOT / "conf" / "sweep" / "lora.yaml").read_text().replace("-lora", "-mine")
    )
    # a shipped sweep's name: the shipped one wins, as with --config-dir (searched after conf/)
    (own / "lora.yaml").write_text("# @package _global_\nstudy:\n  n_trials: 77\n")
    overrides = [*without_sweep(sweep_overrides), "report.enabled=false", "study.n_trials=1"]
    lora = compose("lora", without_sweep(sweep_overrides), own.parent)
    assert lora.study.n_trials == 12
    with pytest.raises(ConfigError, match="sweep: no config named 'mine'"):
        compose("mine", overrides)
    result = harness.run("mine", overrides, config_dir=own.parent, finetune=FakeFineTune())
    assert result.study_name == "tiny-files-mine"
    assert result.best_trial == storage_best(result).number
    assert f"python -m harness.sweep '--config-dir={own.parent}' +sweep=mine" in result.summary


def test_import_harness_stays_light_until_harness_run_is_used():
    probe = (
        "import sys, harness\n"
        "print(sorted(m for m in ('harness.api', 'harness.study', 'optuna') if m in sys.modules))\n"
        "harness.run, harness.SweepResult\n"
        "print('harness.api' in sys.modules, 'optuna' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.stdout.splitlines() == ["[]", "True True"], done.stdout + done.stderr


def test_under_torchrun_the_api_refuses_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="torchrun"):
        harness.run("lora", ["study.n_trials=1"])
    assert list(tmp_path.iterdir()) == []
