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

pytestmark = pytest.mark.integration  # sweeps of the tiny BERT with their final stage

TrialState = optuna.trial.TrialState


@pytest.fixture
def final_overrides(sweep_overrides, tmp_path):
    test_file = write_sentiment_csv(tmp_path / "test.csv", 45, seed=3)
    return [
        *[o for o in sweep_overrides if o != "final.seeds=0"],
        "study.n_trials=3",
        "train.num_train_epochs=1",
        "final.top_k=2",
        "final.seeds=2",
        f"data.test_file={test_file}",
        "study.heartbeat_interval=1",
        "study.grace_period=2",
        "report.enabled=false",
    ]


def records(overrides, compose):
    cfg = compose(overrides)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    companion = optuna.load_study(
        study_name=trials.final_study_name(cfg.study.name), storage=cfg.study.storage
    )
    client = MlflowClient(str(cfg.tracking.uri))
    experiment = client.get_experiment_by_name(cfg.study.name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return cfg, study, companion, client, runs


def final_runs(runs):
    return {
        r.info.run_name: r for r in runs if r.data.tags.get(schema.ROLE_TAG) == schema.ROLE_FINAL
    }


def check_final_choice(summary, cfg, study, client, runs, top, done) -> tuple[dict, dict]:
    """The final stage's record, kept checkpoint, parent-run figures and test scores agree with
    its runs (``done``: the complete final runs of the ``top`` configurations); the test split is
    scored on the chosen configuration's seeds only, after every final run. Returns the record
    and each configuration's mean."""
    finals = final_runs(runs)
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
    # a final run evaluates from train.evaluate_from on only (no pruner decides earlier):
    # of its epochs x evals_per_epoch evaluations, the last ones
    total = int(cfg.train.num_train_epochs * cfg.train.evals_per_epoch)
    late = [k for k in range(1, total + 1) if k >= cfg.train.evaluate_from * total - 1e-9]
    assert 0 < len(late) < total
    for run in finals.values():
        curve = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert len(curve) == len(late), run.info.run_name
    test_values = [r.data.metrics["test_accuracy"] for r in tested.values()]
    assert parent["final_test_accuracy_mean"] == pytest.approx(statistics.fmean(test_values))
    text = summary.format()
    assert "Final stage:" in text and "<- chosen" in text and "Test accuracy" in text
    return record, means


# ~60 s (top_k=2, two seeds); the recipe test keeps a final stage in the default run
@pytest.mark.slow
def test_final_stage_reruns_the_best_configurations_and_chooses_by_mean(final_overrides, compose):
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
    record, means = check_final_choice(summary, cfg, study, client, runs, top, done)
    # a rerun of the finished study does nothing more
    run_sweep(compose(final_overrides))
    assert len(final_runs(records(final_overrides, compose)[4])) == 4
    # the export takes the chosen seed, with the final stage's figures and its test score
    exported = export_model(compose([*final_overrides, f"export.dir={cfg.study.output_dir}/x"]))
    assert exported.seed == record["seed"] and exported.trial == record["trial"]
    figures = json.loads((exported.folder / "metrics.json").read_text())
    assert figures["final_val_mean"] == pytest.approx(means[record["trial"]])
    assert figures["test"] == pytest.approx(
        finals[f"final-{record['trial']}-seed{record['seed']}"].data.metrics["test_accuracy"]
    )
    card = ModelCard.load(exported.folder / "README.md")
    assert {r.dataset_split for r in card.data.eval_results} >= {"validation", "test"}


@pytest.mark.slow  # a 15-30 s sweep, kept out of the default run (under 10 minutes)
def test_a_study_without_a_test_split_says_so(final_overrides, compose):
    overrides = [o for o in final_overrides if not o.startswith("data.test_file")]
    summary = run_sweep(compose([*overrides, "final.top_k=1", "final.seeds=1", "study.n_trials=2"]))
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
    trial_runs = {
        r.info.run_name: r for r in runs if r.data.tags.get(schema.ROLE_TAG) == schema.ROLE_TRIAL
    }
    assert trial_runs["trial-1"].info.status == "FINISHED"
    assert len(companion.get_trials(states=(TrialState.COMPLETE,))) == 4
    assert schema.FINAL_ATTR in study.user_attrs


@pytest.mark.slow  # three sweeps in subprocesses (~1.5 min on 2 cores)
def test_each_attempt_at_a_final_run_is_closed_as_itself(final_overrides, compose):
    """Issue 27 item 4: attempt 1 killed mid-training, attempt 2 killed right after Optuna
    recorded it COMPLETE; the rerun closes attempt 2's run, and attempt 1's stays FAILED."""
    overrides = [*final_overrides, "study.n_trials=1", "final.top_k=1", "final.seeds=1"]
    first = SweepProcess(overrides, faults="final_train_step:0:2=kill")
    assert first.wait(timeout=400) == -signal.SIGKILL, first.err
    second = SweepProcess(overrides, faults="final_recorded=kill")
    assert second.wait(timeout=400) == -signal.SIGKILL, second.err
    third = SweepProcess(overrides)
    assert third.wait(timeout=400) == 0, third.err
    _, study, companion, _, runs = records(overrides, compose)
    attempts = {str(t._trial_id): t for t in companion.get_trials()}
    assert [t.state for t in attempts.values()] == [TrialState.FAIL, TrialState.COMPLETE]
    finals = [r for r in runs if r.data.tags.get(schema.ROLE_TAG) == schema.ROLE_FINAL]
    assert len(finals) == 2
    for run in finals:  # every run says what its own attempt's Optuna trial says
        trial = attempts[run.data.tags[schema.TRIAL_ID_TAG]]
        assert run.data.tags[schema.STATE_TAG] == trial.state.name
        assert run.info.status == ("FINISHED" if trial.state == TrialState.COMPLETE else "FAILED")
    assert study.user_attrs[schema.FINAL_ATTR]["run_id"] == next(
        r.info.run_id for r in finals if r.info.status == "FINISHED"
    )


@pytest.mark.slow  # one search with its final stage, a resume, a refusal (~1 min on 2 cores)
def test_a_resumed_final_stage_never_ships_a_removed_checkpoint(final_overrides, compose):
    """Issue 27 item 1: a configuration whose checkpoints went when another one was chosen can
    no longer ship (it is said to be not eligible), the chosen model is never removed, and a
    resume with other final.seeds is refused before anything is trained."""
    import sqlite3

    from harness.base.errors import ConfigError

    overrides = [*final_overrides, "final.seeds=1"]
    run_sweep(compose(overrides))
    cfg, study, companion, *_ = records(overrides, compose)
    first = study.user_attrs[schema.FINAL_ATTR]
    loser = next(n for n in first["configs"] if int(n) != first["trial"])
    # the configuration that lost now has the better mean (its run's value raised in the store)
    run = next(t for t in companion.get_trials() if trials.final_key(t)[0] == int(loser))
    database = str(cfg.study.storage).removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:
        connection.execute(
            "UPDATE trial_values SET value = 1.0 WHERE trial_id = ?", (run._trial_id,)
        )
    run_sweep(compose(overrides))
    _, study, *_ = records(overrides, compose)
    second = study.user_attrs[schema.FINAL_ATTR]
    assert second["configs"][loser]["mean"] == 1.0
    assert second["configs"][loser]["eligible"] is False
    assert second["trial"] == first["trial"] and second["checkpoint"] == first["checkpoint"]
    output = Path(cfg.study.output_dir)
    assert (output / second["checkpoint"]).is_dir() and (output / "best").resolve().is_dir()
    exported = export_model(compose([*overrides, f"export.dir={output}/x"]))
    assert exported.trial == first["trial"]
    # the seeds its means were made of cannot change on a resume: refused, nothing trained
    with pytest.raises(ConfigError, match=r"final\.seeds: study .* final\.seeds=1, not 2"):
        run_sweep(compose([*overrides, "final.seeds=2"]))
    _, study, companion, *_ = records(overrides, compose)
    assert len(companion.get_trials()) == 2
    assert study.user_attrs[schema.FINAL_ATTR] == second


@pytest.mark.slow  # two workers, a search and a final stage (~1.5 min on 2 cores)
def test_two_workers_queue_train_and_score_each_final_run_once(final_overrides, compose):
    """Issue 27 item 3: two workers reach the final stage together (each waits 3 s between
    reading which runs exist and queueing the missing ones): every run is queued and trained
    once, the choice and its test score cover every seed."""
    overrides = [
        *final_overrides,
        "study.workers=2",
        "study.n_trials=2",
        "final.top_k=1",
        "final.seeds=2",
        "final.combine=best",
    ]
    sweep = SweepProcess(overrides, faults="queue=wait")
    assert sweep.wait(timeout=600) == 0, sweep.err
    assert sweep.err.count("harness fault: queue reached") >= 2  # both workers got there
    _, study, companion, _, runs = records(overrides, compose)
    assert sorted(trials.final_key(t) for t in companion.get_trials()) == [
        (study.user_attrs[schema.FINAL_ATTR]["trial"], 1),
        (study.user_attrs[schema.FINAL_ATTR]["trial"], 2),
    ]
    record = study.user_attrs[schema.FINAL_ATTR]
    tested = {
        r.data.tags[schema.FINAL_SEED_TAG]: r.data.metrics["test_accuracy"]
        for r in final_runs(runs).values()
    }
    assert record["test"]["values"] == tested and len(tested) == 2


def test_a_loss_study_scores_its_test_split_by_the_loss(final_overrides, compose):
    """Issue 27 item 2: study.metric=loss with a test split (it crashed on every run with
    KeyError: 'loss'): the chosen seeds and what ships are scored by their test log loss."""
    overrides = [
        *final_overrides,
        "study.metric=loss",
        "study.direction=minimize",
        "study.n_trials=1",
        "final.top_k=1",
        "final.seeds=1",
        "final.combine=best",
    ]
    summary = run_sweep(compose(overrides))
    _, study, _, _, runs = records(overrides, compose)
    record = study.user_attrs[schema.FINAL_ATTR]
    (run,) = final_runs(runs).values()
    assert record["test"]["values"] == {"1": pytest.approx(run.data.metrics["test_loss"])}
    assert 0 < record["test"]["mean"] < 5
    assert "Test loss" in summary.format()


def test_ctrl_c_in_a_final_run_records_that_run_and_the_same_command_finishes(
    fast_overrides, compose
):
    """Ctrl-C in the first final-stage run (the scripted fake fine-tune): that run, a trial of
    the companion study that run_sweep learns from the final stage it runs, ends FAIL as
    interrupted with its MLflow run KILLED, the search's trials untouched; the same command
    trains it again and makes the choice. (The real fine-tune's final stage stopped by a
    signal: test_kill_9_during_the_final_stage_then_resume.)"""
    from tests.helpers.fake_finetune import FakeFineTune, raise_at

    overrides = [
        *[o for o in fast_overrides if o != "final.seeds=0"],
        "study.n_trials=2",
        "pruner=none",
        "final.top_k=1",
        "final.seeds=2",
        "final.recipe=false",
    ]
    fake = FakeFineTune(on_step=raise_at(3, KeyboardInterrupt(), lambda cfg: len(calls) == 2))
    calls = fake.calls
    with pytest.raises(KeyboardInterrupt):
        run_sweep(compose(overrides), finetune=fake)
    _, study, companion, _, runs = records(overrides, compose)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert not [t for t in study.trials if schema.INTERRUPTED_ATTR in t.user_attrs]
    interrupted, queued = companion.trials  # the second seed's run was queued, never started
    assert (interrupted.state, queued.state) == (TrialState.FAIL, TrialState.WAITING)
    assert interrupted.user_attrs[schema.INTERRUPTED_ATTR] == "interrupted by KeyboardInterrupt"
    (run,) = final_runs(runs).values()
    assert run.info.status == "KILLED"
    assert schema.FINAL_ATTR not in study.user_attrs

    run_sweep(compose(overrides), finetune=FakeFineTune())
    _, study, companion, _, runs = records(overrides, compose)
    assert len(companion.get_trials(states=(TrialState.COMPLETE,))) == 2
    assert study.user_attrs[schema.FINAL_ATTR]["trial"] in {t.number for t in study.trials}
    assert not [r for r in runs if r.info.status == "RUNNING"]
