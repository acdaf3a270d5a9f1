"""A user's data trains whole (issue 26: a 1,600-row file is not cut to the demo's 1,500), as
the study records it, and the summary names the optuna-dashboard command (on the fake
fine-tune: real Optuna and MLflow stores, the tiny model's tokenizer)."""

from __future__ import annotations

import importlib.util

from harness.base.secrets import mask
from harness.records import schema
from harness.study import run_sweep
from harness.study.summary import SweepSummary
from tests.helpers.configs import write_sentiment_csv
from tests.helpers.fake_finetune import FakeFineTune
from tests.helpers.sweeps import stores

ROWS = 1600  # more than any demo cap (1,500)


def own_data(overrides: list[str], tmp_path) -> list[str]:
    """The quick sweep on a larger file, the data's own default cap (no max_train_samples)."""
    train = write_sentiment_csv(tmp_path / "big-train.csv", ROWS, seed=3)
    validation = write_sentiment_csv(tmp_path / "big-validation.csv", 60, seed=4)
    replaced = ("data.max_train_samples=", "data.train_file=", "data.validation_file=")
    kept = [o for o in overrides if not o.startswith(replaced)]
    assert len(kept) == len(overrides) - 3  # the quick sweep's own file and cap are gone
    return [
        *kept,
        f"data.train_file={train}",
        f"data.validation_file={validation}",
        "study.n_trials=1",
        "pruner=none",
    ]


def test_a_file_larger_than_the_demo_cap_trains_on_every_row(fast_overrides, tmp_path, compose):
    overrides = own_data(fast_overrides, tmp_path)
    assert compose(overrides).data.max_train_samples is None
    fake = FakeFineTune()
    summary = run_sweep(compose(overrides), finetune=fake)
    assert summary.complete == 1
    _, _, _, parent, _ = stores(overrides)
    assert parent.data.params[schema.DATA_SIZE_PARAM.format(split="train")] == str(ROWS)
    # the summary names the live dashboard on this storage where the extra is installed
    installed = importlib.util.find_spec("optuna_dashboard") is not None
    storage = str(compose(overrides).study.storage)
    line = f"Optuna dashboard: optuna-dashboard {storage}"
    assert (line in summary.format()) == installed


def test_the_dashboard_command_masks_the_storage_password():
    summary = SweepSummary(
        study_name="s",
        storage="postgresql://harness:secret@db:5432/optuna",
        metric="accuracy",
        direction="maximize",
        n_trials=1,
        dashboard=True,
    )
    text = summary.format()
    assert f"optuna-dashboard {mask(summary.storage)}" in text
    assert "secret" not in text
    summary.dashboard = False
    assert "optuna-dashboard" not in summary.format()
