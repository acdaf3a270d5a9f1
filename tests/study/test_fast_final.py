"""The final stage on the scripted fake fine-tune, against real Optuna storage and a real MLflow
store: the best configurations re-run with fresh seeds, the choice by the mean, the records of
the choice, the test split scored only after it (on the fake's checkpoints, which are real tiny
models), a rerun that does nothing more, and the export of the chosen seed.

The real fine-tune's path: ``tests/study/test_recipe.py`` (a final stage in the default run)
and ``test_final.py`` (the same test on the tiny BERT, slow; kill -9 during the final stage).
"""

from __future__ import annotations

import json
import os
import statistics

import optuna
import pytest

from harness.export import export_model
from harness.records import schema, trials
from harness.study import run_sweep
from tests.helpers.configs import write_sentiment_csv
from tests.helpers.fake_finetune import FakeFineTune
from tests.study.test_final import final_runs, records

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
    record = study.user_attrs[schema.FINAL_ATTR]
    means = {}
    for source in top:
        values = [trials.study_value(r) for r in done if trials.final_key(r)[0] == source.number]
        config = record["configs"][str(source.number)]
        assert config["mean"] == pytest.approx(statistics.fmean(values))
        assert config["sd"] == pytest.approx(statistics.stdev(values))
        means[source.number] = config["mean"]
    assert record["trial"] == max(means, key=means.get)
    chosen = [r for r in done if trials.final_key(r)[0] == record["trial"]]
    best_seed = max(chosen, key=trials.study_value)
    assert record["seed"] == trials.final_key(best_seed)[1]
    output = cfg.study.output_dir
    assert os.path.realpath(f"{output}/best") == os.path.realpath(
        f"{output}/final/checkpoints/run-{best_seed.number}"
    )
    assert os.listdir(f"{output}/final/checkpoints") == [f"run-{best_seed.number}"]
    parent = client.get_run(study.user_attrs[schema.PARENT_RUN_ATTR]).data.metrics
    assert parent["final_val_accuracy_mean"] == pytest.approx(means[record["trial"]])
    assert parent["final_trial"] == record["trial"]
    # the test split: scored on the chosen configuration's seeds only, after every final run
    tested = {name: r for name, r in finals.items() if "test_accuracy" in r.data.metrics}
    assert sorted(tested) == sorted(f"final-{record['trial']}-seed{k}" for k in (1, 2))
    assert not any(
        "test_accuracy" in r.data.metrics
        for r in runs
        if r.info.run_name and r.info.run_name.startswith("trial-")
    )
    scored_at = min(
        client.get_metric_history(r.info.run_id, "test_accuracy")[0].timestamp
        for r in tested.values()
    )
    assert scored_at >= max(r.info.end_time for r in finals.values())
    test_values = [r.data.metrics["test_accuracy"] for r in tested.values()]
    assert parent["final_test_accuracy_mean"] == pytest.approx(statistics.fmean(test_values))
    text = summary.format()
    assert "Final stage:" in text and "<- chosen" in text and "Test accuracy" in text
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
