"""What a sweep cost, recorded per trial and summed per study (tiny model, real Optuna pruners,
real MLflow store): a trial that reaches its last evaluation is complete even where the pruner
would prune it, and compute saved is what pruning alone spared."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from harness.records import schema
from harness.study import run_sweep
from harness.train.arguments import cpu_has_bf16
from tests.helpers.sweeps import stores

pytestmark = pytest.mark.integration  # tiny-BERT sweeps (fast tier: test_fast_search)

TrialState = optuna.trial.TrialState
EVALS = 8  # the quick sweep: 4 epochs x 2 evaluations
AUTO_PRECISION = "bf16" if cpu_has_bf16() else "fp32"  # train.mixed_precision=auto on a CPU


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
        assert run.metrics["samples_seen"] > 0 and run.metrics["train_flos"] > 0
        assert (
            run.metrics["steps_trained"] == trial.user_attrs[schema.COMPUTE_ATTR]["steps_trained"]
        )
    return metrics


@pytest.mark.slow  # its logic on the fake: test_totals_and_compute_saved
def test_a_trial_reaching_its_last_evaluation_is_complete(sweep_overrides, compose):
    """ThresholdPruner(lower=2) would prune every evaluation; warmed up until the last one, it
    is only asked there, and then not at all: every trial completes, nothing was saved."""
    overrides = [
        *sweep_overrides,
        "study.n_trials=2",
        "pruner=threshold",
        "pruner.lower=2.0",
        f"pruner.n_warmup_steps={EVALS}",
    ]
    summary = run_sweep(compose(overrides))
    assert (summary.complete, summary.pruned) == (2, 0)
    assert summary.best_checkpoint is not None  # kept like any complete trial's
    metrics = sums_match(overrides)
    assert metrics[schema.COMPUTE_SAVED_METRIC] == 0.0
    assert metrics["total_steps_trained"] == metrics["total_steps_planned"] == 2 * 60
    assert "0.0% saved by pruning" in summary.format()


def test_compute_saved_counts_what_pruning_spared(sweep_overrides, compose):
    overrides = [*sweep_overrides, "study.n_trials=2", "pruner=threshold", "pruner.lower=2.0"]
    summary = run_sweep(compose(overrides))
    assert summary.pruned == 2
    metrics = sums_match(overrides)
    trained, planned = metrics["total_steps_trained"], metrics["total_steps_planned"]
    assert trained == 2 * 8  # pruned at the first evaluation: after 8 of its 60 steps
    assert metrics[schema.COMPUTE_SAVED_METRIC] == pytest.approx(1 - trained / planned)
    assert metrics[schema.COMPUTE_SAVED_METRIC] > 0.8
    assert metrics[schema.EARLY_STOPPING_SAVED_METRIC] == 0.0


@pytest.mark.slow  # its logic on the fake: test_totals_and_compute_saved
def test_without_pruning_nothing_is_saved(sweep_overrides, compose):
    overrides = [*sweep_overrides, "study.n_trials=2", "pruner=none"]
    summary = run_sweep(compose(overrides))
    metrics = sums_match(overrides)
    assert metrics[schema.COMPUTE_SAVED_METRIC] == 0.0
    assert "Compute: 120 of 120 planned training steps (0.0% saved by pruning)" in summary.format()


@pytest.mark.slow  # on the fake: test_fast_search (pruning on the loss)
def test_pruning_on_the_validation_loss_keeps_accuracy_as_the_value(sweep_overrides, compose):
    """study.prune_metric=loss: each evaluation reports the negated validation loss to the
    pruner (ThresholdPruner(lower=-0.5) prunes a loss above 0.5 at once); the trials' values,
    the best, the report's table and its pruned rows stay in validation accuracy."""
    overrides = [
        *sweep_overrides,
        "study.n_trials=2",
        "study.prune_metric=loss",
        "pruner=threshold",
        "pruner.lower=-0.5",
    ]
    summary = run_sweep(compose(overrides))
    cfg, study, client, _, children = stores(overrides)
    assert summary.pruned == 2
    for trial in study.trials:
        losses = client.get_metric_history(children[trial.number].info.run_id, "val_loss")
        assert list(trial.intermediate_values.values()) == pytest.approx(
            [-m.value for m in sorted(losses, key=lambda m: m.step)]
        )
        accuracy = children[trial.number].data.metrics["best_val_accuracy"]
        assert trial.user_attrs[schema.BEST_SO_FAR_ATTR] == pytest.approx(accuracy)
        assert 0.0 <= accuracy <= 1.0
    table = (Path(str(cfg.report.dir)) / "trials.txt").read_text()
    assert f"{study.trials[0].user_attrs[schema.BEST_SO_FAR_ATTR]:.4f}" in table
