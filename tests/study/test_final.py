"""The final stage on real stores: the best configurations re-run with fresh seeds, the chosen
one by its mean, the test split scored only after the choice, crash safety through a kill -9."""

from __future__ import annotations

import json
import os
import signal
import statistics
from pathlib import Path

import optuna
import pytest
from huggingface_hub import ModelCard
from mlflow.tracking import MlflowClient

from harness.export import export_model
from harness.records import schema, trials
from harness.study import run_sweep
from tests.helpers.configs import write_sentiment_csv
from tests.helpers.sweeps import SweepProcess

TrialState = optuna.trial.TrialState


@pytest.fixture
def final_overrides(sweep_overrides, tmp_path):
    test_file = write_sentiment_csv(tmp_path / "test.csv", 45, seed=3)
    return [*[o for o in sweep_overrides if o != "final.seeds=0"], "study.n_trials=3",
            "train.num_train_epochs=1", "final.top_k=2", "final.seeds=2",
            f"data.test_file={test_file}", "study.heartbeat_interval=1",
            "study.grace_period=2", "report.enabled=false"]


def records(overrides, compose):
    cfg = compose(overrides)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    companion = optuna.load_study(study_name=trials.final_study_name(cfg.study.name),
                                  storage=cfg.study.storage)
    client = MlflowClient(str(cfg.tracking.uri))
    experiment = client.get_experiment_by_name(cfg.study.name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return cfg, study, companion, client, runs


def final_runs(runs):
    return {r.info.run_name: r for r in runs
            if r.data.tags.get(schema.ROLE_TAG) == schema.ROLE_FINAL}


# ~60 s (top_k=2, two seeds); the recipe test keeps a final stage in the default run
@pytest.mark.slow
def test_final_stage_reruns_the_best_configurations_and_chooses_by_mean(final_overrides,
                                                                         compose):
    summary = run_sweep(compose(final_overrides))
    cfg, study, companion, client, runs = records(final_overrides, compose)
    top = trials.ranked(study)[:2]
    finals = final_runs(runs)
    assert sorted(finals) == sorted(f"final-{t.number}-seed{k}" for t in top for k in (1, 2))
    assert all(r.info.status == "FINISHED" for r in finals.values())
    done = companion.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 4
    for run in done:  # identical params to the trial it re-runs, distinct seeds
        number, seed = trials.final_key(run)
        assert run.params == study.trials[number].params
        config = client.download_artifacts(run.user_attrs[schema.RUN_ID_ATTR], "config.yaml")
        assert f"seed: {42 + seed}\n" in Path(config).read_text()
    record = study.user_attrs[schema.FINAL_ATTR]
    means = {}
    for source in top:
        values = [trials.study_value(r) for r in done
                  if trials.final_key(r)[0] == source.number]
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
        f"{output}/final/checkpoints/run-{best_seed.number}")
    assert os.listdir(f"{output}/final/checkpoints") == [f"run-{best_seed.number}"]
    parent = client.get_run(study.user_attrs[schema.PARENT_RUN_ATTR]).data.metrics
    assert parent["final_val_accuracy_mean"] == pytest.approx(means[record["trial"]])
    assert parent["final_trial"] == record["trial"]
    # the test split: scored on the chosen configuration's seeds only, after every final run
    tested = {name: r for name, r in finals.items() if "test_accuracy" in r.data.metrics}
    assert sorted(tested) == sorted(f"final-{record['trial']}-seed{k}" for k in (1, 2))
    assert not any("test_accuracy" in r.data.metrics for r in runs if r.info.run_name
                   and r.info.run_name.startswith("trial-"))
    scored_at = min(client.get_metric_history(r.info.run_id, "test_accuracy")[0].timestamp
                    for r in tested.values())
    assert scored_at >= max(r.info.end_time for r in finals.values())
    test_values = [r.data.metrics["test_accuracy"] for r in tested.values()]
    assert parent["final_test_accuracy_mean"] == pytest.approx(statistics.fmean(test_values))
    text = summary.format()
    assert "Final stage:" in text and "<- chosen" in text and "Test accuracy" in text
    # a rerun of the finished study does nothing more
    run_sweep(compose(final_overrides))
    assert len(final_runs(records(final_overrides, compose)[4])) == 4
    # the export takes the chosen seed, with the final stage's figures and its test score
    exported = export_model(compose([*final_overrides, f"export.dir={cfg.study.output_dir}/x"]))
    assert exported.seed == record["seed"] and exported.trial == record["trial"]
    figures = json.loads((exported.folder / "metrics.json").read_text())
    assert figures["final_val_mean"] == pytest.approx(means[record["trial"]])
    assert figures["test"] == pytest.approx(
        finals[f"final-{record['trial']}-seed{record['seed']}"].data.metrics["test_accuracy"])
    card = ModelCard.load(exported.folder / "README.md")
    assert {r.dataset_split for r in card.data.eval_results} >= {"validation", "test"}


@pytest.mark.slow  # a 15-30 s sweep, kept out of the default run (under 10 minutes)
def test_a_study_without_a_test_split_says_so(final_overrides, compose):
    overrides = [o for o in final_overrides if not o.startswith("data.test_file")]
    summary = run_sweep(compose([*overrides, "final.top_k=1", "final.seeds=1",
                                 "study.n_trials=2"]))
    assert "Test accuracy: the data has no test split." in summary.format()
    _, study, *_ = records(overrides, compose)
    assert "values" not in study.user_attrs[schema.FINAL_ATTR]["test"]


@pytest.mark.slow  # two sweeps in subprocesses (~2 min on 2 cores)
def test_kill_9_during_the_final_stage_then_resume(final_overrides, compose):
    # the second final run (companion trial 1) is killed half-way through its training
    sweep = SweepProcess(final_overrides, faults="final_train_step:1:3=pause")
    sweep.wait_for("harness fault: final_train_step reached (trial 1,", timeout=400)
    sweep.signal(signal.SIGKILL)
    assert sweep.wait() == -signal.SIGKILL
    resumed = SweepProcess(final_overrides)
    assert resumed.wait(timeout=400) == 0, resumed.err
    _, study, companion, _, runs = records(final_overrides, compose)
    finals = [r for r in runs if r.data.tags.get(schema.ROLE_TAG) == schema.ROLE_FINAL]
    assert len([r for r in finals if r.info.status == "FINISHED"]) == 4
    assert not [r for r in runs if r.info.status == "RUNNING"]
    killed = [r for r in finals if r.info.status == "FAILED"]
    assert len(killed) == 1 and "interrupted" in killed[0].data.tags[schema.ERROR_TAG]
    # recovery closed the final run as itself: the search's trial 1 run is untouched
    trial_runs = {r.info.run_name: r for r in runs
                  if r.data.tags.get(schema.ROLE_TAG) == schema.ROLE_TRIAL}
    assert trial_runs["trial-1"].info.status == "FINISHED"
    assert len(companion.get_trials(states=(TrialState.COMPLETE,))) == 4
    assert schema.FINAL_ATTR in study.user_attrs
