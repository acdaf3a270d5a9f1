"""MLflow's compare view in a real browser: a finished tiny sweep on a real `mlflow server`,
its trial runs selected and compared in headless Chromium."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from harness.records import schema
from harness.study import run_sweep
from tests.helpers.browser import CHROMIUM, compare_runs

pytestmark = pytest.mark.integration  # Chromium against a real mlflow server

SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"  # kept for a look (gitignored)


@pytest.fixture
def chromium():
    pytest.importorskip("playwright", reason="pip install playwright (make test installs it)")
    if not Path(CHROMIUM).is_file():
        message = (
            f"no Chromium at {CHROMIUM}: `apt-get install chromium` (make test does, "
            "as root) or point HARNESS_CHROMIUM at one"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


def test_trial_runs_line_up_in_the_mlflow_compare_view(
    chromium, sweep_overrides, mlflow_server, tmp_path, compose
):
    cfg = compose(
        [
            *sweep_overrides,
            "study.n_trials=3",
            "train.num_train_epochs=2",
            f"tracking.uri={mlflow_server}",
            "tracking.artifact_location=null",
            "study.name=ui-compare",
            "report.enabled=false",
        ]
    )
    run_sweep(cfg)
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("ui-compare")
    study = optuna.load_study(study_name="ui-compare", storage=cfg.study.storage)
    runs = client.search_runs([experiment.experiment_id], "tags.`harness.role` = 'trial'")
    # the same param and metric names in every trial run, its state as a tag, under the parent
    assert len(runs) == 3
    assert len({frozenset(r.data.params) for r in runs}) == 1
    assert len({frozenset(r.data.metrics) for r in runs}) == 1
    states = {t.number: t.state.name for t in study.trials}
    parent = study.user_attrs[schema.PARENT_RUN_ATTR]
    for run in runs:
        number = int(run.data.tags[schema.NUMBER_TAG])
        assert run.info.run_name == f"trial-{number}"
        assert run.data.tags[schema.STATE_TAG] == states[number]
        assert run.data.tags[schema.PARENT_RUN_TAG] == parent

    SCREENSHOTS.mkdir(exist_ok=True)
    screenshot = SCREENSHOTS / "mlflow-compare.png"
    names = [f"trial-{n}" for n in range(3)]
    text = compare_runs(mlflow_server, experiment.experiment_id, names, screenshot)
    for name in names:
        assert name in text
    assert "train.learning_rate" in text and "best_val_accuracy" in text
    for run in runs:  # each run's sampled learning rate is on the page
        assert run.data.params["train.learning_rate"] in text
    assert screenshot.stat().st_size > 20_000
