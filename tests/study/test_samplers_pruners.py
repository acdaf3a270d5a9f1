"""Every sampler and pruner option composes and runs a short study on real Optuna and MLflow
stores, with the scripted fake fine-tune (tests/helpers/fake_finetune.py): what is tested is the
option's Optuna object in the harness's study loop, not the training. The real fine-tune under a
sampler and pruner runs in tests/study/test_sweep_e2e.py (TPE, the forced pruner) and the
promotion sweep (tests/study/test_promotion_sweep.py)."""

from __future__ import annotations

import optuna
import pytest

from harness.records import schema
from harness.study import run_sweep
from tests.helpers.configs import CONF
from tests.helpers.fake_finetune import FakeFineTune

SAMPLERS = [p.stem for p in sorted((CONF / "sampler").glob("*.yaml"))]
PRUNERS = [p.stem for p in sorted((CONF / "pruner").glob("*.yaml"))]
NEEDS = {"threshold": ["pruner.lower=0.0"]}
CLASSES = {
    "cmaes": "optuna.samplers.CmaEsSampler",
    "gp": "optuna.samplers.GPSampler",
    "grid": "optuna.samplers.GridSampler",
    "nsga2": "optuna.samplers.NSGAIISampler",
    "qmc": "optuna.samplers.QMCSampler",
    "random": "optuna.samplers.RandomSampler",
    "tpe": "optuna.samplers.TPESampler",
}


def parent_params(cfg) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    experiment = client.get_experiment_by_name(cfg.study.name)
    parent = next(
        r
        for r in client.search_runs([experiment.experiment_id])
        if r.data.tags.get(schema.ROLE_TAG) == schema.ROLE_STUDY
    )
    return parent.data.params


def short(fast_overrides: list[str]) -> list[str]:
    return [
        *fast_overrides,
        "study.n_trials=2",
        "train.num_train_epochs=1",
        "data.max_train_samples=64",
    ]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs_a_short_study(sampler, fast_overrides, compose):
    overrides = [*short(fast_overrides), f"sampler={sampler}", "pruner=none"]
    summary = run_sweep(compose(overrides), finetune=FakeFineTune())
    assert summary.complete == 2
    cfg = compose(overrides)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    assert parent_params(cfg)["sampler"] == CLASSES[sampler]  # recorded with the study
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 2  # distinct samples


@pytest.mark.parametrize("pruner", PRUNERS)
def test_every_pruner_runs_a_short_study(pruner, fast_overrides, compose):
    overrides = [*short(fast_overrides), f"pruner={pruner}", *NEEDS.get(pruner, [])]
    summary = run_sweep(compose(overrides), finetune=FakeFineTune())
    assert summary.complete + summary.pruned == 2 and summary.failed == 0


def test_the_grid_covers_the_search_space(sweep_overrides, compose):
    cfg = compose([*sweep_overrides, "sampler=grid"])
    grid = cfg.sampler.search_space
    assert list(grid["peft.config.r"]) == [4, 8, 16]
    lr = list(grid["train.learning_rate"])
    assert len(lr) == 3 and lr[0] == pytest.approx(1e-2) and lr[-1] == pytest.approx(5e-2)
    assert lr[1] == pytest.approx((1e-2 * 5e-2) ** 0.5)  # log-spaced


def test_sampler_seeds_are_recorded(fast_overrides, compose):
    overrides = [*short(fast_overrides), "study.n_trials=1", "sampler.seed=7"]
    cfg = compose(overrides)
    run_sweep(cfg, finetune=FakeFineTune())
    assert parent_params(cfg)["sampler.seed"] == "7"
