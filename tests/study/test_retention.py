"""Which checkpoints a study keeps (harness.study.retention), on a real Optuna study and a real
folder of checkpoints, no model: the best ``keep``, the best of each method, the shipped
ensemble's members; ``best`` linked to the best or to the final stage's choice. The same rules
through a real sweep: tests/study/test_failures.py (checkpoints.keep=2, locally and in MLflow)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from harness.records import schema
from harness.study.retention import StudyCheckpoints, drop_mlflow_checkpoints


def _study(values, direction="maximize", methods=None):
    study = optuna.create_study(direction=direction)
    for i, value in enumerate(values):
        params = {} if methods is None else {schema.METHOD_PARAM: methods[i]}
        distributions = (
            {}
            if methods is None
            else {schema.METHOD_PARAM: optuna.distributions.CategoricalDistribution(["a", "b"])}
        )
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.COMPLETE if value is not None else TrialState.PRUNED,
                value=value,
                params=params,
                distributions=distributions,
                user_attrs={schema.RUN_ID_ATTR: f"run-{i}"},
            )
        )
    return study


def _write(store, numbers):
    for n in numbers:
        folder = store.partial(n)
        folder.mkdir()  # as save_checkpoint makes it
        (folder / "weights").write_text("w")
        store.commit(n, {"trial": n})


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_the_best_keep_trials_stay_and_best_links_the_best(tmp_path, direction):
    values = [0.5, 0.9, 0.7, 0.1]
    study = _study(values, direction)
    store = StudyCheckpoints(tmp_path, keep=2)
    _write(store, range(4))
    removed = store.remove_unkept(study)
    top = [1, 2] if direction == "maximize" else [3, 0]
    assert sorted(store.committed()) == sorted(top)
    assert removed == sorted(set(range(4)) - set(top))
    assert store.best_path().resolve() == store.path(top[0]).resolve()


def test_wanted_says_whether_a_new_value_would_stay(tmp_path):
    study = _study([0.5, 0.9, 0.7])
    store = StudyCheckpoints(tmp_path, keep=2)
    assert store.wanted(study, 0.8) and not store.wanted(study, 0.6)
    assert StudyCheckpoints(tmp_path, keep=None).wanted(study, 0.0)


def test_the_best_of_each_method_stays(tmp_path):
    study = _study([0.9, 0.8, 0.3], methods=["a", "a", "b"])
    store = StudyCheckpoints(tmp_path, keep=1)
    _write(store, range(3))
    store.remove_unkept(study)
    assert store.committed() == [0, 2]
    assert store.wanted(study, 0.4, method="b") and not store.wanted(study, 0.2, method="b")


def test_the_shipped_ensemble_members_stay_and_best_links_the_choice(tmp_path):
    study = _study([0.9, 0.8, 0.3])
    store = StudyCheckpoints(tmp_path, keep=1)
    _write(store, range(3))
    (tmp_path / "final" / "ensemble").mkdir(parents=True)
    study.set_user_attr(
        schema.FINAL_ATTR,
        {
            "ensemble": {
                "folder": "final/ensemble",
                "members": [{"checkpoint": "checkpoints/trial-2"}],
            }
        },
    )
    store.remove_unkept(study)
    assert store.committed() == [0, 2]
    assert store.best_path().resolve() == (tmp_path / "final" / "ensemble").resolve()


def test_unfinished_trials_and_their_partial_folders_are_left_alone(tmp_path):
    study = _study([0.9, 0.8])
    running = study.ask()  # trial 2, still running
    store = StudyCheckpoints(tmp_path, keep=1)
    _write(store, [0, 1])
    store.partial(1).mkdir()  # left by a killed process: trial 1 is finished
    store.partial(running.number).mkdir()
    store.remove_unkept(study)
    assert store.committed() == [0] and store.partials() == [running.number]


class _Tracker:
    def __init__(self, with_checkpoint):
        self.with_checkpoint, self.deleted = set(with_checkpoint), []

    def has_checkpoint(self, run_id):
        return run_id in self.with_checkpoint

    def delete_checkpoint(self, run_id, reason):
        self.deleted.append((run_id, reason))


def test_mlflow_drops_the_checkpoints_of_complete_trials_not_kept(tmp_path):
    study = _study([0.5, 0.9, 0.7, None])
    store = StudyCheckpoints(tmp_path, keep=1)
    tracker = _Tracker({"run-0", "run-1", "run-3"})
    drop_mlflow_checkpoints(study, tracker, store)  # what MLflow still holds
    assert tracker.deleted == [("run-0", "removed: not among the best 1 trials")]
    tracker = _Tracker(set())
    drop_mlflow_checkpoints(study, tracker, store, [2])  # just removed locally: no lookup
    assert [run for run, _ in tracker.deleted] == ["run-2"]
