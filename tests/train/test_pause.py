"""A fine-tune paused at an evaluation and continued from its saved state, in a fresh Trainer,
against the same fine-tune run without a pause (the tiny BERT, the real Trainer)."""

from __future__ import annotations

import optuna
import pytest
import torch
from transformers import TrainerCallback

from harness.records.trials import pruning_signal
from harness.study import prepare_study, validate_config
from harness.train.callbacks import MetricsLogger, PruningCallback
from harness.train.finetune import BEST_WEIGHTS, HARNESS_STATE, TRAINER_STATE, finetune

pytestmark = pytest.mark.integration  # real runs paused and continued


class PauseAt(optuna.pruners.BasePruner):
    """Stops a trial at one evaluation (a scripted rung)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def prune(self, study, trial) -> bool:
        return trial.last_step == self.step


class LastWeights(TrainerCallback):
    """Every weight of the model when training ended."""

    def __init__(self) -> None:
        self.weights: dict[str, torch.Tensor] = {}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}


def run(prepared, pause_at, tmp_path, name, pause_to=None, resume_from=None):
    """One fine-tune (a pausing PruningCallback at ``pause_at``); its result, last weights,
    logged curve points and the best checkpoint's folder."""
    cfg = prepared.cfg
    study = optuna.create_study(direction="maximize", pruner=PauseAt(pause_at))
    trial = study.ask()
    logged, last = [], LastWeights()
    result = finetune(
        cfg,
        prepared.base,
        prepared.datasets,
        prepared.metrics,
        callbacks=[
            PruningCallback(trial, *pruning_signal(cfg.study), pause=True),
            MetricsLogger(lambda metrics, step: logged.append((step, metrics))),
            last,
        ],
        checkpoint_dir=tmp_path / name,
        pause_to=pause_to,
        resume_from=resume_from,
    )
    return result, last.weights, logged


@pytest.mark.parametrize("sweep", ["lora", "full"])
def test_a_paused_run_continued_from_its_state_ends_as_the_uninterrupted_run(
    sweep, compose, sweep_overrides, tmp_path
):
    overrides = [f"+sweep={sweep}" if o == "+sweep=lora" else o for o in sweep_overrides]
    cfg = compose([*overrides, "train.learning_rate=0.02", "train.warmup_steps=0.1"])
    prepared = prepare_study(cfg, validate_config(cfg))

    whole, whole_weights, whole_curve = run(prepared, None, tmp_path, "whole")
    state = tmp_path / "paused"
    first, _, first_curve = run(prepared, 3, tmp_path, "first", pause_to=state)
    assert first.paused and first.pruned and first.evaluations == 3 and first.checkpoint is None
    assert (state / TRAINER_STATE / "optimizer.pt").is_file()
    assert (state / TRAINER_STATE / "rng_state.pth").is_file()
    assert (state / HARNESS_STATE).is_file()
    rest, rest_weights, rest_curve = run(prepared, None, tmp_path, "rest", resume_from=state)

    assert not rest.paused and rest.resumed_step == first.steps
    assert first.steps + rest.steps == whole.steps  # each step trained once
    assert rest.evaluations == whole.evaluations == 8
    assert rest.value == pytest.approx(whole.value) and rest.best_step == whole.best_step
    for key, tensor in whole_weights.items():
        torch.testing.assert_close(rest_weights[key], tensor, rtol=0, atol=1e-6)
    # the two parts of the curve make the uninterrupted one: no step missing or twice
    steps = [step for step, _ in first_curve + rest_curve]
    assert steps == [step for step, _ in whole_curve]
    for (_, part), (_, full) in zip(first_curve + rest_curve, whole_curve, strict=True):
        assert part.keys() == full.keys()
        for key, value in full.items():
            assert part[key] == pytest.approx(value, abs=1e-5), key
    # the best evaluation's checkpoint is the same model
    for name in ("adapter_model.safetensors", "model.safetensors"):
        if (tmp_path / "whole" / name).is_file():
            from safetensors.torch import load_file

            a, b = load_file(tmp_path / "whole" / name), load_file(tmp_path / "rest" / name)
            for key in a:
                torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_a_pause_keeps_the_best_weights_when_the_best_evaluation_came_earlier(
    compose, sweep_overrides, tmp_path
):
    """Paused after its best evaluation: the state holds those weights apart, and the
    continued run's checkpoint is that evaluation's (a rate that overshoots late)."""
    cfg = compose([*sweep_overrides, "train.learning_rate=0.3", "train.warmup_steps=0.0"])
    prepared = prepare_study(cfg, validate_config(cfg))
    whole, _, _ = run(prepared, None, tmp_path, "whole")
    state = tmp_path / "paused"
    first, _, _ = run(prepared, 6, tmp_path, "first", pause_to=state)
    if first.best_step == first.steps:
        pytest.skip("the best evaluation was the last one before the pause at this rate")
    assert (state / BEST_WEIGHTS).is_file()
    rest, _, _ = run(prepared, None, tmp_path, "rest", resume_from=state)
    assert rest.value == pytest.approx(whole.value) and rest.best_step == whole.best_step


def test_which_evaluations_run_changes_nothing_that_is_trained(compose, sweep_overrides):
    """train.evaluate_from: a run that skips its early evaluations (a final-stage run's
    schedule) trains the same weights as one that runs every evaluation: an evaluation draws
    nothing from the RNG, and the evaluations that ran score the same."""
    cfg = compose([*sweep_overrides, "train.learning_rate=0.02", "train.warmup_steps=0.1"])
    prepared = prepare_study(cfg, validate_config(cfg))
    runs = {}
    for evaluate_from in (0.0, 0.6):
        trial_cfg = prepared.space.apply(cfg, {"train.evaluate_from": evaluate_from})
        last, logged = LastWeights(), []
        result = finetune(
            trial_cfg,
            prepared.base,
            prepared.datasets,
            prepared.metrics,
            callbacks=[
                MetricsLogger(lambda metrics, step, logged=logged: logged.append((step, metrics))),
                last,
            ],
            decisions=frozenset(),  # no pruner: the early evaluations are skipped
        )
        curve = {step: m["val_accuracy"] for step, m in logged if "val_accuracy" in m}
        runs[evaluate_from] = (result, last.weights, curve)
    (every, every_weights, every_curve), (late, late_weights, late_curve) = runs[0.0], runs[0.6]
    assert every.evaluations == late.evaluations == len(every_curve) == 8  # 4 epochs x 2
    assert sorted(late_curve) == sorted(every_curve)[-4:]  # evaluations 5-8 of 8 (0.6 x 8 = 4.8)
    assert late_curve == {step: every_curve[step] for step in late_curve}
    assert every_weights.keys() == late_weights.keys()
    for name, weight in every_weights.items():
        assert torch.equal(weight, late_weights[name]), name
