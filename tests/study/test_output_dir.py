"""One study per study.output_dir: a second study pointed at the first one's folder is refused
before anything is created, and the first study's checkpoints stay."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from harness.base.errors import ConfigError
from harness.study import run_sweep


def test_a_second_study_in_the_same_output_dir_is_refused_and_deletes_nothing(sweep_overrides,
                                                                            compose):
    overrides = [*sweep_overrides, "study.n_trials=2", "pruner=none", "train.num_train_epochs=1",
                 "checkpoints.keep=1"]
    first = compose([*overrides, "study.name=first"])
    run_sweep(first)
    folder = Path(first.study.output_dir)
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    assert any(p.parts[0] == "checkpoints" for p in before)

    second = compose([*overrides, "study.name=second"])  # the same study.output_dir
    with pytest.raises(ConfigError) as err:
        run_sweep(second)
    assert err.value.field == "study.output_dir"
    assert err.value.message == (f"'{folder}' holds the checkpoints of study 'first': give "
                                 "study 'second' a folder of its own (study.output_dir=...)")
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    assert "second" not in optuna.get_all_study_names(first.study.storage)

    run_sweep(compose([*overrides, "study.name=first", "study.n_trials=3"]))  # its own: resumes
