"""Trainer callbacks against a real Optuna study (no Trainer needed: the hooks are called as the
Trainer calls them)."""

from __future__ import annotations

import optuna
import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments

from harness.base.direction import is_better
from harness.base.errors import ConfigError
from harness.records.trials import pruning_signal
from harness.train.callbacks import (
    BestSnapshot,
    EvaluateAtEnd,
    MetricsLogger,
    PruningCallback,
)


@pytest.fixture
def hooks(tmp_path):
    args = TrainingArguments(
        output_dir=str(tmp_path), eval_strategy="steps", eval_steps=10, report_to="none"
    )
    return args, TrainerState(global_step=0, max_steps=100), TrainerControl()


def evaluate(callback, hooks, value, at=None, **kwargs):
    """The callback's next evaluation (eval_steps after its last one), or the one at step
    ``at``, as the Trainer calls it."""
    args, state, control = hooks
    state.global_step = at if at is not None else (callback.index + 1) * args.eval_steps
    callback.on_evaluate(
        args, state, control, metrics={"eval_accuracy": value, "eval_loss": 1 - value}, **kwargs
    )
    return control


def test_reports_every_evaluation_as_a_step_and_keeps_going_when_not_pruned(hooks):
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    callback = PruningCallback(trial, "accuracy")
    for value in (0.4, 0.6, 0.5):
        control = evaluate(callback, hooks, value)
    assert not callback.pruned and not control.should_training_stop
    study.tell(trial, 0.6)
    assert study.trials[0].intermediate_values == {1: 0.4, 2: 0.6, 3: 0.5}


def test_stops_training_when_the_pruner_says_so(hooks):
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.5)
    )
    trial = study.ask()
    callback = PruningCallback(trial, "accuracy")
    assert not evaluate(callback, hooks, 0.7).should_training_stop
    control = evaluate(callback, hooks, 0.3)
    assert callback.pruned and control.should_training_stop
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert study.trials[0].state == optuna.trial.TrialState.PRUNED


def test_the_last_evaluation_is_never_pruned(hooks):
    """A trial at its budget's end (or stopped early at this evaluation) has spent its compute:
    pruning it there saves nothing, so the pruner is not asked and the trial is complete."""
    args, state, control = hooks
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.5)
    )
    trial = study.ask()
    callback = PruningCallback(trial, "accuracy")
    # early stopping decided at this evaluation (the 5th), before the pruner
    control.should_training_stop = True
    evaluate(callback, hooks, 0.3, at=50)
    assert not callback.pruned
    control.should_training_stop = False
    assert not evaluate(callback, hooks, 0.3, at=state.max_steps).should_training_stop  # the last
    assert not callback.pruned
    assert trial.should_prune()  # the pruner would have pruned both
    assert study.trials[0].intermediate_values == {5: 0.3, 10: 0.3}


def test_median_pruner_prunes_a_trial_behind_earlier_ones(hooks):
    study = optuna.create_study(
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2),
    )
    for good in (0.8, 0.9):  # two finished trials set the median per step
        trial = study.ask()
        callback = PruningCallback(trial, "accuracy")
        for step_value in (good - 0.1, good):
            evaluate(callback, hooks, step_value)
        study.tell(trial, good)
    trial = study.ask()
    callback = PruningCallback(trial, "accuracy")
    assert not evaluate(callback, hooks, 0.1).should_training_stop  # warm-up step
    assert evaluate(callback, hooks, 0.2).should_training_stop


def test_a_metric_that_is_not_computed_is_a_config_error(hooks):
    study = optuna.create_study()
    with pytest.raises(ConfigError, match="f1"):
        evaluate(PruningCallback(study.ask(), "f1"), hooks, 0.5)


def test_best_snapshot_keeps_the_best_evaluation_not_the_last(hooks):
    model = torch.nn.Linear(2, 2)
    snapshot = BestSnapshot("accuracy", "maximize")
    for value, fill in ((0.5, 1.0), (0.9, 2.0), (0.7, 3.0)):
        with torch.no_grad():
            model.weight.fill_(fill)
        evaluate(snapshot, hooks, value, model=model)
    assert snapshot.value == 0.9 and snapshot.evaluations == 3
    assert snapshot.metrics == {"accuracy": 0.9, "loss": pytest.approx(0.1)}
    snapshot.restore(model)
    assert torch.all(model.weight == 2.0)


def test_is_better_follows_the_direction():
    assert is_better(0.5, None, "maximize") and is_better(0.5, 0.4, "maximize")
    assert is_better(0.3, 0.4, "minimize") and not is_better(0.5, 0.4, "minimize")


def test_metrics_logger_names_curves_and_skips_the_summary(hooks):
    args, state, control = hooks
    state.global_step = 7
    seen = []
    logger = MetricsLogger(lambda metrics, step: seen.append((metrics, step)))
    logger.on_log(args, state, control, logs={"loss": 1.2, "learning_rate": 1e-3, "epoch": 0.5})
    logger.on_log(args, state, control, logs={"eval_accuracy": 0.6, "eval_runtime": 2.0})
    logger.on_log(args, state, control, logs={"train_runtime": 9.0, "train_loss": 1.0})
    assert seen == [
        ({"train_loss": 1.2, "learning_rate": 1e-3, "epoch": 0.5}, 7),
        ({"val_accuracy": 0.6}, 7),
    ]


def test_evaluates_after_a_last_step_that_is_not_an_evaluation_step(hooks):
    args, state, control = hooks
    state.max_steps, state.global_step = 25, 25
    EvaluateAtEnd().on_step_end(args, state, control)
    assert control.should_evaluate
    control = TrainerControl()
    state.max_steps, state.global_step = 30, 30  # 30 is an evaluation step already
    EvaluateAtEnd().on_step_end(args, state, control)
    assert not control.should_evaluate


def test_early_stopping_waits_for_patience_then_records_the_epoch(hooks):
    from harness.train.callbacks import EarlyStopping

    args, state, _ = hooks
    stopper = EarlyStopping("accuracy", "maximize", patience=2, threshold=0.01)
    stops = []
    for epoch, value in enumerate((0.5, 0.7, 0.705, 0.69, 0.8), start=1):
        state.epoch = epoch * 0.5
        control = TrainerControl()
        stopper.on_evaluate(args, state, control, metrics={"eval_accuracy": value})
        stops.append(control.should_training_stop)
    # 0.705 is not better than 0.7 by more than 0.01; 0.69 is the second miss in a row
    assert stops == [False, False, False, True, False]
    assert stopper.stopped_epoch == 2.0


@pytest.mark.parametrize(
    ("study_cfg", "reported"),
    [
        ({"metric": "accuracy", "direction": "maximize", "prune_metric": None}, [0.7, 0.6]),
        # the loss of a study that maximizes accuracy runs the other way: negated
        ({"metric": "accuracy", "direction": "maximize", "prune_metric": "loss"}, [-0.3, -0.4]),
        ({"metric": "loss", "direction": "minimize", "prune_metric": "accuracy"}, [-0.7, -0.6]),
        ({"metric": "loss", "direction": "minimize", "prune_metric": "loss"}, [0.3, 0.4]),
    ],
)
def test_the_pruner_sees_the_prune_metric_in_the_study_direction(hooks, study_cfg, reported):
    from omegaconf import OmegaConf

    study = optuna.create_study(direction=study_cfg["direction"], pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    callback = PruningCallback(trial, *pruning_signal(OmegaConf.create(study_cfg)))
    for value in (0.7, 0.6):  # accuracy; the loss is 1 - accuracy
        evaluate(callback, hooks, value)
    assert list(study.trials[0].intermediate_values.values()) == pytest.approx(reported)


def test_an_evaluation_index_counts_the_schedule_not_the_evaluations_that_ran():
    from harness.train.callbacks import evaluation_index

    assert [evaluation_index(s, 24) for s in (24, 48, 192, 264, 282)] == [1, 2, 8, 11, 12]


def test_a_callback_reports_a_later_evaluation_at_its_index_after_skipped_ones(hooks):
    """Evaluations 1, 2 and 4 ran, 3 was skipped: the pruner sees steps 1, 2, 4, as rungs do."""
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    callback = PruningCallback(trial, "accuracy")
    for at, value in ((10, 0.4), (20, 0.5), (40, 0.7)):
        evaluate(callback, hooks, value, at=at)
    assert callback.count == 4
    assert study.trials[0].intermediate_values == {1: 0.4, 2: 0.5, 4: 0.7}


@pytest.mark.parametrize(
    ("evaluate_from", "decisions", "kept"),
    [
        # the default study: 12 evaluations, rungs 1, 2, 4, 8, the last 40 % (8 of 12 on)
        (0.6, {1, 2, 4, 8}, [1, 2, 4, 8, 9, 10, 11, 12]),
        (0.6, set(), [8, 9, 10, 11, 12]),  # nothing decides early: a final-stage run
        (2 / 3, set(), [8, 9, 10, 11, 12]),  # 8 / 12 is exactly 2 / 3: kept
        (0.6, None, list(range(1, 13))),  # a pruner that may decide at any evaluation
        (0.0, set(), list(range(1, 13))),  # every evaluation
        (1.0, set(), [12]),  # only the last
    ],
)
def test_the_schedule_skips_early_evaluations_but_not_the_pruners_or_the_last(
    hooks, evaluate_from, decisions, kept
):
    from transformers.trainer_callback import DefaultFlowCallback

    from harness.train.callbacks import EvaluationSchedule

    args, state, _ = hooks
    args.eval_steps = state.eval_steps = 24  # as the Trainer sets them
    state.max_steps = 282  # 3 epochs of 94 steps, 4 evaluations each: the last at 282
    flow, schedule, at_end = (
        DefaultFlowCallback(),
        EvaluationSchedule(evaluate_from, decisions),
        EvaluateAtEnd(),
    )
    ran = []
    for step in range(1, state.max_steps + 1):
        state.global_step = step
        control = TrainerControl()
        for callback in (flow, schedule, at_end):  # the Trainer's order: its own first
            control = callback.on_step_end(args, state, control) or control
        if control.should_evaluate:
            ran.append(-(-step // 24))
    assert ran == kept
