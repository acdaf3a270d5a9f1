"""The study's search on the scripted fake fine-tune (``tests/helpers/fake_finetune.py``), against
real Optuna storage (SQLite) and a real MLflow store: totals and compute, pruning and
``steps_trained``, resume, warm start, summaries and the report's table. Seconds per test.

The real fine-tune's path of each is still run on the tiny BERT: totals and pruning in
``tests/study/test_compute.py`` (slow) and ``test_sweep_e2e.py``'s pruned sweep, resume in
``test_crash_safety.py`` (kill -9 then the same command), warm start in ``test_enqueue.py``
(slow) and the recipe's queueing in ``test_recipe.py``, the report in ``tests/report``.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from harness.records import schema
from harness.study import run_sweep
from tests.helpers.fake_finetune import FakeFineTune
from tests.helpers.sweeps import assert_consistent, finished_trials, stores
from tests.study.test_compute import AUTO_PRECISION, EVALS
from tests.study.test_enqueue import MANUAL, add_trial, other_study  # noqa: F401 (a fixture)

TrialState = optuna.trial.TrialState


def sums_match(overrides: list[str]) -> dict[str, float]:
    """The parent run's totals equal the sums of the trial runs' figures; returns its metrics."""
    cfg, study, client, parent, children = stores(overrides)
    metrics = client.get_run(parent.info.run_id).data.metrics
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    for name in ("steps_trained", "steps_planned", "samples_seen", "train_flos", "cpu_time_s"):
        runs = sum(children[t.number].data.metrics[name] for t in finished)
        assert metrics[f"{schema.TOTAL_PREFIX}{name}"] == pytest.approx(runs), name
    for trial in finished:
        run = children[trial.number].data
        assert run.tags[schema.PRECISION_TAG] == AUTO_PRECISION
        compute = trial.user_attrs[schema.COMPUTE_ATTR]
        assert run.metrics["steps_trained"] == compute["steps_trained"]
        assert trial.user_attrs[schema.STEPS_TRAINED_ATTR] == compute["steps_trained"]
    return metrics


@pytest.mark.parametrize(
    ("pruner", "complete", "trained", "saved"),
    [
        # ThresholdPruner(lower=2) would prune every evaluation; warmed up until the last one, it
        # is only asked there, and then not at all: every trial completes, nothing was saved
        (["pruner=threshold", "pruner.lower=2.0", f"pruner.n_warmup_steps={EVALS}"], 2, 120, 0.0),
        # pruned at the first evaluation: after 8 of its 60 steps
        (["pruner=threshold", "pruner.lower=2.0"], 0, 16, pytest.approx(1 - 16 / 120)),
        (["pruner=none"], 2, 120, 0.0),
    ],
    ids=["last-evaluation", "pruned", "none"],
)
def test_totals_and_compute_saved(fast_overrides, compose, pruner, complete, trained, saved):
    overrides = [*fast_overrides, "study.n_trials=2", *pruner]
    summary = run_sweep(compose(overrides), finetune=FakeFineTune())
    assert (summary.complete, summary.pruned) == (complete, 2 - complete)
    metrics = sums_match(overrides)
    assert metrics["total_steps_trained"] == trained
    assert metrics["total_steps_planned"] == 120
    assert metrics[schema.COMPUTE_SAVED_METRIC] == saved
    assert metrics[schema.EARLY_STOPPING_SAVED_METRIC] == 0.0
    if complete:
        assert summary.best_checkpoint is not None
    if pruner == ["pruner=none"]:
        text = "Compute: 120 of 120 planned training steps (0.0% saved by pruning)"
        assert text in summary.format()


def test_the_median_pruner_stops_the_worse_trials_where_steps_trained_says(fast_overrides, compose):
    """A learning rate below 0.02 scores far worse (the script): the median pruner stops those
    trials after its warm-up; each pruned trial's steps, curve and record agree."""

    def curve(cfg, evaluation, evaluations):
        good = float(cfg.train.learning_rate) >= 0.02
        return (0.6 if good else 0.3) + 0.3 * evaluation / evaluations

    fake = FakeFineTune(curve=curve)
    overrides = [*fast_overrides, "study.n_trials=8", "study.prune_metric=null"]
    summary = run_sweep(compose(overrides), finetune=fake)
    cfg, study, client, _, children = assert_consistent(overrides, n_trials=8)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned and summary.pruned == len(pruned)
    for trial in study.trials:
        run = children[trial.number]
        curve_points = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert len(curve_points) == len(trial.intermediate_values)
        steps = trial.user_attrs[schema.STEPS_TRAINED_ATTR]
        if trial.state == TrialState.PRUNED:
            assert float(trial.params["train.learning_rate"]) < 0.02
            assert steps == max(p.step for p in curve_points) < 60
            assert len(trial.intermediate_values) == steps // 8
            assert trial.user_attrs[schema.BEST_SO_FAR_ATTR] == pytest.approx(
                run.data.metrics["best_val_accuracy"]
            )
            assert schema.CHECKPOINT_ARTIFACT not in {
                a.path for a in client.list_artifacts(run.info.run_id)
            }
        else:
            assert steps == 60 and len(trial.intermediate_values) == EVALS
    assert f"{summary.pruned} pruned" in summary.format()


def test_resume_runs_only_the_missing_trials_and_keeps_the_parent_run(fast_overrides, compose):
    first = [*fast_overrides, "study.n_trials=2", "pruner=none"]
    run_sweep(compose(first), finetune=FakeFineTune())
    _, before, _, parent_before, _ = stores(first)
    earlier = finished_trials(before)

    again = [*fast_overrides, "study.n_trials=4", "pruner=none"]
    fake = FakeFineTune()
    summary = run_sweep(compose(again), finetune=fake)
    _, after, _, parent_after, children = assert_consistent(again, n_trials=4)
    assert len(fake.calls) == 2 and summary.complete == 4
    assert {n: v for n, v in finished_trials(after).items() if n in earlier} == earlier
    assert all(t.params not in [e[1] for e in earlier.values()] for t in after.trials[2:])
    assert parent_after.info.run_id == parent_before.info.run_id
    assert sorted(children) == [0, 1, 2, 3]
    sums_match(again)  # the totals span both runs

    idle = FakeFineTune()
    assert run_sweep(compose(again), finetune=idle).complete == 4  # nothing left to run
    assert not idle.calls


def test_a_study_resumes_whatever_evaluations_run(fast_overrides, compose):
    """train.evaluate_from and train.cpu_dropout are not part of the study's settings: a study
    made before the options existed (its stored settings lack them) resumes, and so does one
    resumed with every evaluation and torch's dropout."""
    first = [*fast_overrides, "study.n_trials=1", "pruner=none"]
    run_sweep(compose(first), finetune=FakeFineTune())
    _, study, _, _, _ = stores(first)
    stored = study.user_attrs[schema.FINGERPRINT_ATTR]["train"]
    assert "evaluate_from" not in stored and "cpu_dropout" not in stored
    again = [
        *fast_overrides,
        "study.n_trials=2",
        "pruner=none",
        "train.evaluate_from=0",
        "train.cpu_dropout=torch",
    ]
    fake = FakeFineTune()
    assert run_sweep(compose(again), finetune=fake).complete == 2
    assert len(fake.calls) == 1
    _, study, _, _, _ = stores(again)
    assert sorted(study.trials[0].intermediate_values) == [5, 6, 7, 8]  # k >= 0.6 x 8 = 4.8
    assert sorted(study.trials[1].intermediate_values) == list(range(1, 9))


def test_queued_trials_run_first_once_and_are_marked(
    fast_overrides,
    compose,
    other_study,  # noqa: F811 (the fixture imported above)
):
    other, url = other_study
    overrides = [
        *fast_overrides,
        "pruner=none",
        "study.warm_start.name=earlier",
        f"study.warm_start.storage={url}",
        "study.warm_start.top_k=2",
        "study.enqueue=[{train.learning_rate: 0.035, peft.config.r: 4, peft.config.lora_alpha: 8}]",
    ]
    run_sweep(compose([*overrides, "study.n_trials=4"]), finetune=FakeFineTune())
    _, study, _, _, runs = stores(overrides)
    expected = [
        (MANUAL, "manual"),
        (other.trials[1].params, "warm_start:earlier#1"),
        (other.trials[0].params, "warm_start:earlier#0"),
    ]
    for trial, (params, mark) in zip(study.trials, expected, strict=False):
        assert trial.state == TrialState.COMPLETE
        assert {k: trial.params[k] for k in params} == params, trial.number
        assert trial.user_attrs[schema.ENQUEUED_ATTR] == mark
        assert runs[trial.number].data.tags[schema.ENQUEUED_TAG] == mark
    assert schema.ENQUEUED_TAG not in runs[3].data.tags
    assert study.user_attrs[schema.WARM_START_ATTR]["name"] == "earlier"

    add_trial(other, 0.045, 16, 1.0)  # a better trial there now: not queued on resume
    run_sweep(compose([*overrides, "study.n_trials=5"]), finetune=FakeFineTune())
    _, study, _, _, _ = stores(overrides)
    marked = [t.user_attrs.get(schema.ENQUEUED_ATTR) for t in study.trials]
    assert marked == ["manual", "warm_start:earlier#1", "warm_start:earlier#0", None, None]


def test_pruning_on_the_loss_keeps_accuracy_in_the_summary_and_the_report_table(
    fast_overrides, compose
):
    """study.prune_metric=loss: the pruner sees the negated validation loss, while the trials'
    values, the summary and the report's table (and its pruned rows) stay in accuracy."""
    overrides = [
        *fast_overrides,
        "report.enabled=true",
        "study.n_trials=3",
        "study.prune_metric=loss",
        "pruner=threshold",
        "pruner.lower=-0.5",
        f"pruner.n_warmup_steps={EVALS // 2}",
        "report.plots=[]",
    ]
    summary = run_sweep(compose(overrides), finetune=FakeFineTune())
    cfg, study, client, _, children = stores(overrides)
    for trial in study.trials:
        losses = client.get_metric_history(children[trial.number].info.run_id, "val_loss")
        assert list(trial.intermediate_values.values()) == pytest.approx(
            [-m.value for m in sorted(losses, key=lambda m: m.step)]
        )
    table = (Path(str(cfg.report.dir)) / "trials.txt").read_text()
    for trial in study.trials:
        value = (
            trial.value
            if trial.state == TrialState.COMPLETE
            else trial.user_attrs[schema.BEST_SO_FAR_ATTR]
        )
        assert f"{value:.4f}" in table
        assert f"{value:.4f}" in summary.report or summary.report == ""
    text = summary.format()
    assert f"3 of 3 trials finished: {summary.complete} complete, {summary.pruned} pruned" in text
    assert f"validation accuracy {study.best_value:.4f}" in text if summary.complete else True
