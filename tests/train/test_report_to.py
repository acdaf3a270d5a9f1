"""train.report_to: Hugging Face's loggers beside the harness's own MLflow records (issue 26)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from harness.base.errors import ConfigError
from harness.study import run_sweep
from harness.train.arguments import reporting_integrations, training_arguments
from tests.helpers.configs import overrides_in
from tests.helpers.sweeps import stores


def train_cfg(compose, value: str):
    return compose(["+sweep=lora", f"train.report_to={value}"]).train


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("none", []),
        ("[]", []),
        ("tensorboard", ["tensorboard"]),
        ("[tensorboard]", ["tensorboard"]),
    ],
)
def test_report_to_names_the_integrations(compose, tmp_path, value, names):
    cfg = train_cfg(compose, value)
    assert reporting_integrations(cfg) == names
    assert training_arguments(cfg, 100, str(tmp_path)).report_to == names


def test_the_default_reports_to_no_integration(compose, tmp_path):
    assert training_arguments(compose(["+sweep=lora"]).train, 100, str(tmp_path)).report_to == []


def test_all_is_every_installed_integration_but_mlflow(compose):
    names = reporting_integrations(train_cfg(compose, "all"))
    assert "mlflow" not in names and "tensorboard" in names  # both installed here


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[tensorboard,mlflow]", "mlflow is the harness's own tracking"),
        ("mlflow", "remove mlflow from train.report_to"),
        ("[tensorboard,nosuchlogger]", "'nosuchlogger' is not an integration of the Trainer"),
        ("[none,tensorboard]", "none cannot be listed with others"),
        ("3", "must be an integration name or a list of them"),
    ],
)
def test_report_to_refusals_name_the_field(compose, value, message):
    with pytest.raises(ConfigError) as caught:
        reporting_integrations(train_cfg(compose, value))
    assert caught.value.field == "train.report_to" and message in str(caught.value)


def test_the_config_check_refuses_mlflow_before_any_import(compose):
    from harness.config import check_sections

    with pytest.raises(ConfigError, match="train.report_to: mlflow is the harness's own"):
        check_sections(compose(["+sweep=lora", "train.report_to=[mlflow]"]))
    check_sections(compose(["+sweep=lora", "train.report_to=[tensorboard]"]))


def trial_metric_keys(overrides: list[str]) -> list[str]:
    _, study, _, _, children = stores(overrides)
    (trial,) = study.trials
    return sorted(children[trial.number].data.metrics)


@pytest.mark.integration
def test_tensorboard_writes_event_files_and_mlflow_records_are_unchanged(
    tmp_path, tiny_model_dir, sentiment_files, compose, mlflow_template
):
    extra = ["study.n_trials=1", "pruner=none", "train.num_train_epochs=1", "report.enabled=false"]
    keys = {}
    for report_to in ("none", "[tensorboard]"):
        folder = tmp_path / ("tensorboard" if "tensorboard" in report_to else "plain")
        (folder / "mlruns").mkdir(parents=True)
        shutil.copy(mlflow_template, folder / "mlruns" / "mlflow.db")
        overrides = [
            *overrides_in(folder, tiny_model_dir, sentiment_files),
            *extra,
            f"train.report_to={report_to}",
        ]
        summary = run_sweep(compose(overrides))
        assert summary.complete == 1
        keys[report_to] = trial_metric_keys(overrides)
        events = sorted(Path(folder / "sweeps" / "study").rglob("events.out.tfevents.*"))
        if report_to == "none":
            assert not events
        else:
            assert events and {e.parent for e in events} == {
                folder / "sweeps" / "study" / "tensorboard" / "trial-0"
            }
            assert _scalars(events[0]) >= {"eval/loss", "train/loss"}
    assert keys["[tensorboard]"] == keys["none"] and keys["none"]


def _scalars(events: Path) -> set[str]:
    """The scalar tags an event file holds."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(events.parent))
    accumulator.Reload()
    return set(accumulator.Tags()["scalars"])


def test_report_to_is_no_longer_owned_by_the_harness(compose):
    from harness.config.access import OWNED_ARGS

    assert "report_to" not in OWNED_ARGS
    assert OmegaConf.select(compose(["+sweep=lora"]), "train.report_to") == "none"
