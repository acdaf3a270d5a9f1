"""The final stage on the scripted fake fine-tune, against real Optuna storage and a real MLflow
store: the best configurations re-run with fresh seeds, the choice by the mean, the records of
the choice, the test split scored only after it (on the fake's checkpoints, which are real tiny
models), a rerun that does nothing more, and the export of the chosen seed.

The real fine-tune's path: ``tests/study/test_recipe.py`` (a final stage in the default run)
and ``test_final.py`` (the same test on the tiny BERT, slow; kill -9 during the final stage).
"""

from __future__ import annotations

import json

import optuna
import pytest

from harness.export import export_model
from harness.records import trials
from harness.study import run_sweep
from tests.helpers.configs import write_sentiment_csv
from tests.helpers.fake_finetune import FakeFineTune
from tests.study.test_final import check_final_choice, final_runs, records

TrialState = optuna.trial.TrialState


@pytest.fixture
def fast_final_overrides(fast_overrides, tmp_path):
    test_file = write_sentiment_csv(tmp_path / "test.csv", 45, seed=3)
    return [
        *[o for o in fast_overrides if o != "final.seeds=0"],
        "study.n_trials=3",
        "pruner=none",
        "train.num_train_epochs=1",
        "final.top_k=2",
        "final.seeds=2",
        f"data.test_file={test_file}",
    ]


def test_final_stage_reruns_the_best_configurations_and_chooses_by_mean(
    fast_final_overrides, compose
):
    overrides = fast_final_overrides
    fake = FakeFineTune()
    summary = run_sweep(compose(overrides), finetune=fake)
    cfg, study, companion, client, runs = records(overrides, compose)
    assert len(fake.calls) == 3 + 4  # the search, then 2 configurations x 2 seeds
    top = trials.ranked(study)[:2]
    finals = final_runs(runs)
    assert sorted(finals) == sorted(f"final-{t.number}-seed{k}" for t in top for k in (1, 2))
    assert all(r.info.status == "FINISHED" for r in finals.values())
    done = companion.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 4
    for run in done:  # identical params to the trial it re-runs, distinct seeds
        number, seed = trials.final_key(run)
        assert run.params == study.trials[number].params
    seeds = sorted(int(c.trial_cfg.train.seed) for c in fake.calls[3:])
    assert seeds == [43, 43, 44, 44]
    record, means = check_final_choice(summary, cfg, study, client, runs, top, done)
    # a rerun of the finished study does nothing more
    idle = FakeFineTune()
    run_sweep(compose(overrides), finetune=idle)
    assert not idle.calls
    assert len(final_runs(records(overrides, compose)[4])) == 4
    # the export takes the chosen seed, with the final stage's figures and its test score
    exported = export_model(compose([*overrides, f"export.dir={cfg.study.output_dir}/x"]))
    assert exported.seed == record["seed"] and exported.trial == record["trial"]
    figures = json.loads((exported.folder / "metrics.json").read_text())
    assert figures["final_val_mean"] == pytest.approx(means[record["trial"]])
