"""Two identical commands started together on one study claim different sampler slots: their
samplers get different seeds (recorded on each trial) and sample different parameters."""

from __future__ import annotations

import optuna
import pytest

from harness.records import schema
from tests.helpers.configs import compose
from tests.helpers.sweeps import SweepProcess

pytestmark = pytest.mark.integration  # sweeps started together in subprocesses


@pytest.mark.slow  # two sweeps in subprocesses at once (~1 min on 2 cores)
def test_identical_commands_started_together_sample_differently(sweep_overrides):
    overrides = [
        *sweep_overrides,
        "study.n_trials=2",
        "pruner=none",
        "train.num_train_epochs=1",
        "report.enabled=false",
        "sampler.seed=7",
    ]
    # each trial waits 3 s at its first step, so that one process cannot run both trials
    # before the other has started (a tiny trial takes a fraction of a second)
    faults = "train_step:0:1=wait,train_step:1:1=wait"
    first, second = SweepProcess(overrides, faults=faults), SweepProcess(overrides, faults=faults)
    assert first.wait() == 0, first.err
    assert second.wait() == 0, second.err
    cfg = compose(overrides)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    slots = {
        k: v["pid"] for k, v in study.user_attrs.items() if k.startswith(schema.SLOT_ATTR_PREFIX)
    }
    assert sorted(slots) == [f"{schema.SLOT_ATTR_PREFIX}0", f"{schema.SLOT_ATTR_PREFIX}1"]
    assert len(set(slots.values())) == 2
    by_process = {}
    for trial in study.trials:
        by_process.setdefault(trial.user_attrs[schema.WORKER_ATTR]["pid"], []).append(trial)
    assert len(by_process) == 2  # each ran at least one trial
    seeds = {
        pid: {t.user_attrs[schema.SAMPLER_SEED_ATTR] for t in ts} for pid, ts in by_process.items()
    }
    assert all(len(s) == 1 for s in seeds.values())
    assert len({next(iter(s)) for s in seeds.values()}) == 2
    firsts = [ts[0].params for ts in by_process.values()]
    assert firsts[0] != firsts[1]
