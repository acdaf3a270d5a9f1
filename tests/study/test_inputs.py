"""Resume notices changed inputs: a data file edited in place is refused (not mixed into the
study), and a study from before inputs were recorded adopts them."""

from __future__ import annotations

import shutil

import optuna
import pytest

from harness.base.errors import ConfigError
from harness.records import schema
from harness.study import run_sweep

pytestmark = pytest.mark.integration  # sweeps of the tiny BERT, resumed


def test_a_data_file_edited_in_place_is_refused_on_resume(
    sweep_overrides, sentiment_files, tmp_path, compose
):
    train = tmp_path / "train.csv"
    shutil.copy(sentiment_files["train"], train)
    overrides = [
        *sweep_overrides,
        f"data.train_file={train}",
        "study.n_trials=1",
        "pruner=none",
        "train.num_train_epochs=1",
    ]
    cfg = compose(overrides)
    run_sweep(cfg)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    inputs = study.user_attrs[schema.INPUTS_ATTR]
    assert inputs["data.train_file"].startswith("sha256:")
    assert inputs["data.validation_file"].startswith("sha256:")
    assert inputs["model.name_or_path"].startswith("sha256:")  # a local model folder

    lines = train.read_text().splitlines()
    text, label = lines[1].rsplit(",", 1)
    lines[1] = f"{text},{'negative' if label != 'negative' else 'positive'}"  # one label edited
    train.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as err:
        run_sweep(compose([*overrides[:-3], "study.n_trials=2", *overrides[-2:]]))
    assert err.value.field == "data.train_file"
    assert (
        f"study '{cfg.study.name}' was started on other inputs: data.train_file was "
        f"'{inputs['data.train_file']}', now 'sha256:" in err.value.message
    )
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    assert len(study.trials) == 1  # nothing ran on the edited data


@pytest.mark.slow  # a 15-30 s sweep, kept out of the default run (under 10 minutes)
def test_a_study_from_before_inputs_were_recorded_adopts_them(sweep_overrides, compose):
    overrides = [*sweep_overrides, "study.n_trials=1", "pruner=none", "train.num_train_epochs=1"]
    cfg = compose(overrides)
    run_sweep(cfg)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    recorded = study.user_attrs[schema.INPUTS_ATTR]
    study.set_user_attr(schema.INPUTS_ATTR, {})  # as an older version left it
    run_sweep(compose([*overrides[:-3], "study.n_trials=2", *overrides[-2:]]))
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    assert study.user_attrs[schema.INPUTS_ATTR] == recorded
    assert len(study.trials) == 2
