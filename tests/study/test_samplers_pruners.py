"""Every sampler and pruner option composes and runs a short real study (tiny model)."""

from __future__ import annotations

import optuna
import pytest

from harness.records import schema
from harness.study import run_sweep
from tests.helpers.configs import CONF

# The default run keeps the options no other default test runs; the others run in make
# test-slow (tpe, random, median, threshold and none run in the sweep and method tests, and all
# compose in the default run: tests/test_config.py).
QUICK = {"grid", "hyperband"}
SAMPLERS = [
    pytest.param(p.stem, marks=() if p.stem in QUICK else pytest.mark.slow)
    for p in sorted((CONF / "sampler").glob("*.yaml"))
]
PRUNERS = [
    pytest.param(p.stem, marks=() if p.stem in QUICK else pytest.mark.slow)
    for p in sorted((CONF / "pruner").glob("*.yaml"))
]
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


def short(sweep_overrides: list[str]) -> list[str]:
    return [
        *sweep_overrides,
        "study.n_trials=2",
        "train.num_train_epochs=1",
        "data.max_train_samples=64",
    ]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs_a_short_study(sampler, sweep_overrides, compose):
    overrides = [*short(sweep_overrides), f"sampler={sampler}", "pruner=none"]
    summary = run_sweep(compose(overrides))
    assert summary.complete == 2
    cfg = compose(overrides)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    assert parent_params(cfg)["sampler"] == CLASSES[sampler]  # recorded with the study
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 2  # distinct samples


@pytest.mark.parametrize("pruner", PRUNERS)
def test_every_pruner_runs_a_short_study(pruner, sweep_overrides, compose):
    overrides = [*short(sweep_overrides), f"pruner={pruner}", *NEEDS.get(pruner, [])]
    summary = run_sweep(compose(overrides))
    assert summary.complete + summary.pruned == 2 and summary.failed == 0


def test_the_grid_covers_the_search_space(sweep_overrides, compose):
    cfg = compose([*sweep_overrides, "sampler=grid"])
    grid = cfg.sampler.search_space
    assert list(grid["peft.config.r"]) == [4, 8, 16]
    lr = list(grid["train.learning_rate"])
    assert len(lr) == 3 and lr[0] == pytest.approx(1e-2) and lr[-1] == pytest.approx(5e-2)
    assert lr[1] == pytest.approx((1e-2 * 5e-2) ** 0.5)  # log-spaced


def test_sampler_seeds_are_recorded(sweep_overrides, compose):
    overrides = [*short(sweep_overrides), "study.n_trials=1", "sampler.seed=7"]
    cfg = compose(overrides)
    run_sweep(cfg)
    assert parent_params(cfg)["sampler.seed"] == "7"
