"""Failing trials: an exception, out of memory, a NaN loss, an invalid combination of sampled
values. Each ends as FAIL with its error on the Optuna trial and the MLflow run, and the study
goes on; the failure limit stops a study that is clearly broken. Bounded checkpoints."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from harness.base.errors import StudyStopped
from harness.records import schema
from harness.study import run_sweep
from harness.study.failure_limit import FailureLimit
from tests.helpers.sweeps import assert_consistent, stores

TrialState = optuna.trial.TrialState


@pytest.mark.integration
def test_nan_loss_and_out_of_memory_fail_their_trial_and_the_study_goes_on(
    sweep_overrides, monkeypatch, compose
):
    monkeypatch.setenv("HARNESS_FAULTS", "train_step:1:2=nan,train_step:3:5=oom")
    overrides = [*sweep_overrides, "study.n_trials=3", "pruner=none", "train.num_train_epochs=2"]
    summary = run_sweep(compose(overrides))
    _, study, client, _, children = assert_consistent(overrides, n_trials=3)
    assert [t.state for t in study.trials] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.COMPLETE,
    ]
    assert (summary.complete, summary.failed) == (3, 2)
    nan, oom = study.trials[1], study.trials[3]
    # detected at the step it appeared, not at the end of the trial (30 steps)
    assert nan.user_attrs[schema.ERROR_ATTR].startswith(
        "NonFiniteLoss: training loss became nan at step 2 "
    )
    assert oom.user_attrs[schema.ERROR_ATTR].startswith("OutOfMemoryError: injected out of memory")
    for trial, kind in ((nan, "NonFiniteLoss"), (oom, "OutOfMemoryError")):
        run = children[trial.number]
        assert run.info.status == "FAILED" and run.data.tags["error_type"] == kind
        assert run.data.tags[schema.ERROR_TAG] == trial.user_attrs[schema.ERROR_ATTR]
        traceback = client.download_artifacts(run.info.run_id, schema.TRACEBACK_ARTIFACT)
        assert "Traceback (most recent call last)" in Path(traceback).read_text()
        assert not trial.intermediate_values  # it never reached an evaluation
        assert schema.CHECKPOINT_ARTIFACT not in {
            a.path for a in client.list_artifacts(run.info.run_id)
        }


@pytest.mark.integration
@pytest.mark.slow  # the limit on the fake: test_fast_failures (broken study)
def test_an_invalid_combination_fails_and_a_broken_study_stops_with_a_clear_message(
    sweep_overrides, compose
):
    # a dropout above 1 passes the study's checks (the default is 0.1) but breaks every trial
    overrides = [
        *sweep_overrides,
        "study.n_trials=5",
        "pruner=none",
        "search_space={peft.config.lora_dropout: {low: 1.5, high: 2.0}}",
    ]
    with pytest.raises(StudyStopped) as stopped:
        run_sweep(compose(overrides))
    message = str(stopped.value)
    assert "3 trials in a row failed (study.failure_limit.consecutive=3)" in message
    assert "every one with a ConfigError, the last: ConfigError: peft.config: dropout" in message
    assert "rerun the same command" in message
    cfg, study, client, parent, children = stores(overrides)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 3  # then it stopped
    for run in children.values():
        assert run.info.status == "FAILED" and run.data.tags[schema.STATE_TAG] == "FAIL"
        assert "dropout" in run.data.tags[schema.ERROR_TAG]
    assert parent.info.status == "FAILED"
    assert "0 complete, 0 pruned, 3 failed" in stopped.value.summary.format()


def _trial(state: TrialState, error: str = "", interrupted: str = ""):
    attrs = {schema.ERROR_ATTR: error} if error else {}
    if interrupted:
        attrs[schema.INTERRUPTED_ATTR] = interrupted
    return optuna.trial.create_trial(
        state=state, value=0.5 if state == TrialState.COMPLETE else None, user_attrs=attrs
    )


class _Study:
    stopped = False

    def stop(self) -> None:
        self.stopped = True


@pytest.mark.parametrize(
    ("limit", "sequence", "stops_after"),
    [
        ({"consecutive": 2, "rate": None, "min_trials": 1}, "CFCFF", 5),
        ({"consecutive": None, "rate": 0.5, "min_trials": 4}, "CFFCF", 5),
        ({"consecutive": None, "rate": 0.5, "min_trials": 4}, "FFC", None),  # too few to judge
        # an interrupted trial neither counts nor breaks a run of failures
        ({"consecutive": 2, "rate": None, "min_trials": 1}, "FIF", 3),
        ({"consecutive": 2, "rate": None, "min_trials": 1}, "FICF", None),
        ({"consecutive": None, "rate": None, "min_trials": 1}, "FFFFFF", None),
    ],
)
def test_the_failure_limit_counts_in_a_row_or_as_a_rate(limit, sequence, stops_after):
    callback, study = FailureLimit(**limit), _Study()
    kinds = {
        "C": (TrialState.COMPLETE, "", ""),
        "F": (TrialState.FAIL, "ValueError: x", ""),
        "I": (TrialState.FAIL, "", "interrupted by SIGINT"),
    }
    for i, kind in enumerate(sequence, start=1):
        callback(study, _trial(*kinds[kind]))
        if study.stopped:
            assert i == stops_after and callback.reason.startswith("study stopped: ")
            return
    assert stops_after is None and callback.reason is None


@pytest.mark.integration
def test_only_the_best_k_checkpoints_are_kept_locally_and_in_mlflow(
    sweep_overrides, tmp_path, compose
):
    overrides = [
        *sweep_overrides,
        "study.n_trials=4",
        "pruner=none",
        "checkpoints.keep=2",
        "train.num_train_epochs=2",
    ]
    summary = run_sweep(compose(overrides))
    _, study, client, _, children = assert_consistent(overrides, n_trials=4)
    ranked = sorted(study.trials, key=lambda t: (-t.value, t.number))
    top = {t.number for t in ranked[:2]}
    folder = tmp_path / "sweeps" / "study"
    assert {p.name for p in (folder / "checkpoints").iterdir()} == {f"trial-{n}" for n in top}
    assert (folder / "best").resolve() == (
        folder / "checkpoints" / f"trial-{study.best_trial.number}"
    ).resolve()
    for number, run in children.items():
        has = schema.CHECKPOINT_ARTIFACT in {a.path for a in client.list_artifacts(run.info.run_id)}
        assert has == (number in top), number
        if not has and schema.CHECKPOINT_TAG in run.data.tags:
            assert run.data.tags[schema.CHECKPOINT_TAG].startswith("removed: not among the best 2")
    assert summary.kept_checkpoints == [t.number for t in ranked[:2]]
    assert "Checkpoints kept" in summary.format()


@pytest.mark.slow  # a 15-30 s sweep, kept out of the default run (under 10 minutes)
def test_keep_null_keeps_every_checkpoint_and_a_lower_keep_later_drops_them_in_mlflow(
    sweep_overrides, tmp_path, compose
):
    overrides = [
        *sweep_overrides,
        "study.n_trials=3",
        "pruner=none",
        "checkpoints.keep=null",
        "train.num_train_epochs=1",
    ]
    run_sweep(compose(overrides))
    folder = tmp_path / "sweeps" / "study" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["trial-0", "trial-1", "trial-2"]

    # resumed with a lower keep (nothing left to run): MLflow follows the local folder
    run_sweep(compose([*overrides[:-2], "checkpoints.keep=1", "train.num_train_epochs=1"]))
    _, study, client, _, children = stores(overrides)
    best = study.best_trial.number
    assert sorted(p.name for p in folder.iterdir()) == [f"trial-{best}"]
    in_mlflow = {
        n
        for n, run in children.items()
        if schema.CHECKPOINT_ARTIFACT in {a.path for a in client.list_artifacts(run.info.run_id)}
    }
    assert in_mlflow == {best}
    for number in {0, 1, 2} - {best}:
        assert (
            client.get_run(children[number].info.run_id)
            .data.tags[schema.CHECKPOINT_TAG]
            .startswith("removed: not among the best 1")
        )


@pytest.mark.integration
def test_a_trial_failing_before_its_run_exists_records_why_on_both_sides(
    sweep_overrides, monkeypatch, compose
):
    # an error while the trial's parameters are sampled: before its MLflow run was created
    monkeypatch.setenv("HARNESS_FAULTS", "sample:1=raise")
    overrides = [*sweep_overrides, "study.n_trials=2", "pruner=none", "train.num_train_epochs=1"]
    summary = run_sweep(compose(overrides))
    _, study, _, _, children = assert_consistent(overrides, n_trials=2)
    failed = study.trials[1]
    assert failed.state == TrialState.FAIL and (summary.complete, summary.failed) == (2, 1)
    assert failed.user_attrs[schema.ERROR_ATTR].startswith("InjectedFault: ")
    run = children[1]
    assert run.info.status == "FAILED" and run.data.tags[schema.STATE_TAG] == "FAIL"
    assert run.data.tags[schema.ERROR_TAG] == failed.user_attrs[schema.ERROR_ATTR]


@pytest.mark.integration
def test_a_worker_whose_output_pipe_broke_records_the_same_outcome_on_both_sides(sweep_overrides):
    """Whoever read its output is gone: writing the trial's line fails (EPIPE). The trial's
    outcome does not depend on its log line: Optuna and MLflow agree that it completed."""
    import subprocess
    import sys

    overrides = [*sweep_overrides, "study.n_trials=1", "pruner=none", "train.num_train_epochs=1"]
    worker = subprocess.Popen(
        [sys.executable, "-m", "harness.sweep", *overrides],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    worker.stderr.close()  # the reading end is gone: the worker's trial line cannot be written
    worker.wait(timeout=300)
    _, study, _, _, children = stores(overrides)
    trial = study.trials[0]
    run = children[0]
    assert run.data.tags[schema.STATE_TAG] == trial.state.name
    assert run.info.status == schema.RUN_STATUS[trial.state.name]
    assert trial.state == TrialState.COMPLETE and run.info.status == "FINISHED"
