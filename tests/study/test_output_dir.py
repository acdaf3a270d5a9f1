"""One study per study.output_dir: a second study pointed at the first one's folder is refused
before anything is created, and the first study's checkpoints stay. The studies train on the
scripted fake fine-tune (tests/helpers/fake_finetune.py: its checkpoints are real tiny models);
what is tested is the output folder's mark, not the training."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from harness.base.errors import ConfigError
from harness.study import run_sweep
from tests.helpers.fake_finetune import FakeFineTune


def test_a_second_study_in_the_same_output_dir_is_refused_and_deletes_nothing(
    fast_overrides, compose
):
    overrides = [
        *fast_overrides,
        "study.n_trials=2",
        "pruner=none",
        "train.num_train_epochs=1",
        "checkpoints.keep=1",
    ]
    first = compose([*overrides, "study.name=first"])
    run_sweep(first, finetune=FakeFineTune())
    folder = Path(first.study.output_dir)
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    assert any(p.parts[0] == "checkpoints" for p in before)

    second = compose([*overrides, "study.name=second"])  # the same study.output_dir
    with pytest.raises(ConfigError) as err:
        run_sweep(second, finetune=FakeFineTune())
    assert err.value.field == "study.output_dir"
    assert err.value.message == (
        f"'{folder}' holds the checkpoints of study 'first': give "
        "study 'second' a folder of its own (study.output_dir=...)"
    )
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    assert "second" not in optuna.get_all_study_names(first.study.storage)

    run_sweep(
        compose([*overrides, "study.name=first", "study.n_trials=3"]), finetune=FakeFineTune()
    )  # its own: resumes


def test_the_same_study_name_in_another_storage_is_refused_and_an_old_mark_is_adopted(
    fast_overrides, compose, tmp_path
):
    """The folder is bound to the study's uid (as its MLflow parent run is), not its name: study
    'pn' in b.db is refused the folder of study 'pn' in a.db, before anything is created."""
    import json

    from harness.records import schema
    from harness.study.output_dir import OWNER_FILE

    overrides = [
        *fast_overrides,
        "study.n_trials=1",
        "pruner=none",
        "train.num_train_epochs=1",
        "checkpoints.keep=1",
        "study.name=pn",
    ]
    first = compose([*overrides, f"study.storage=sqlite:///{tmp_path}/a.db"])
    run_sweep(first, finetune=FakeFineTune())
    uid = optuna.load_study(study_name="pn", storage=first.study.storage).user_attrs[
        schema.STUDY_UID_ATTR
    ]
    folder = Path(first.study.output_dir)
    assert json.loads((folder / OWNER_FILE).read_text())["uid"] == uid
    before = {p.relative_to(folder): p.stat().st_mtime_ns for p in folder.rglob("*")}

    second = compose([*overrides, f"study.storage=sqlite:///{tmp_path}/b.db"])
    with pytest.raises(ConfigError) as err:
        run_sweep(second, finetune=FakeFineTune())
    assert err.value.field == "study.output_dir"
    assert err.value.message.startswith(
        f"'{folder}' holds the checkpoints of another study named 'pn'"
    )
    assert "study.output_dir=..." in err.value.message
    assert {p.relative_to(folder): p.stat().st_mtime_ns for p in folder.rglob("*")} == before
    assert not (tmp_path / "b.db").exists()  # nothing created

    # a folder marked by an older version (the name only) is adopted by its study, and bound
    (folder / OWNER_FILE).write_text(json.dumps({"study": "pn"}) + "\n")
    run_sweep(
        compose([*overrides, f"study.storage=sqlite:///{tmp_path}/a.db"]), finetune=FakeFineTune()
    )
    assert json.loads((folder / OWNER_FILE).read_text())["uid"] == uid
