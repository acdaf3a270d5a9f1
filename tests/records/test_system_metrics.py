"""System metrics on trial runs: MLflow's own monitor, started by the tracker for each run it
creates through the client, writing ``system/...`` metrics into the study's real MLflow SQLite
store, stopped when the run ends (finished, pruned, failed, interrupted, the final stage's),
its thread gone; none with ``tracking.system_metrics=false``; without psutil one warning and
the study goes on. Studies on the scripted fake fine-tune (``tests/helpers/fake_finetune.py``),
one of whose trials hangs on cue so that it spans several sampling intervals.
"""

from __future__ import annotations

import logging
import sys
import threading

import optuna
import pytest
from mlflow import MlflowClient

from harness.base.errors import ConfigError
from harness.records import runs, schema
from harness.records.tracker import Tracker
from harness.study import run_sweep
from tests.helpers.configs import write_sentiment_csv
from tests.helpers.fake_finetune import FakeFineTune, hang_at, raise_at

TrialState = optuna.trial.TrialState
CPU = "system/cpu_utilization_percentage"
MEMORY = "system/system_memory_usage_megabytes"
MONITOR_THREAD = "SystemMetricsMonitor"  # the name MLflow gives its monitor's thread


def monitor_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == MONITOR_THREAD and t.is_alive()]


def all_runs(overrides: list[str], compose) -> tuple[MlflowClient, list]:
    cfg = compose(overrides)
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    experiment = client.get_experiment_by_name(cfg.study.name)
    return client, client.search_runs([experiment.experiment_id], max_results=1000)


@pytest.fixture
def quick(sweep_overrides) -> list[str]:
    return [
        *sweep_overrides,
        "report.enabled=false",
        "pruner=none",
        "train.num_train_epochs=1",
        "tracking.system_metrics_interval=0.5",
    ]


def test_every_trial_run_records_system_metrics_and_its_monitor_stops_with_it(
    quick, tmp_path, compose
):
    """Trial 0 hangs 2.6 s (five intervals of 0.5 s), trial 1 fails, trial 2 runs in
    milliseconds; then the final stage (one configuration, one seed)."""
    test_file = write_sentiment_csv(tmp_path / "test.csv", 45, seed=3)
    overrides = [
        *[o for o in quick if o != "final.seeds=0"],
        "study.n_trials=2",
        "final.top_k=1",
        "final.seeds=1",
        f"data.test_file={test_file}",
    ]
    fake = FakeFineTune()
    hang = hang_at(2, 2.6, lambda cfg: fake.started == 1)
    fail = raise_at(3, RuntimeError("scripted"), lambda cfg: fake.started == 2)

    def on_step(cfg, step):
        hang(cfg, step)
        fail(cfg, step)

    fake.on_step = on_step
    before = len(monitor_threads())
    run_sweep(compose(overrides), finetune=fake)

    client, found = all_runs(overrides, compose)
    cfg = compose(overrides)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    assert [t.state for t in study.trials] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.COMPLETE,
    ]
    by_name = {r.info.run_name: r for r in found}
    parent = next(r for r in found if r.data.tags[schema.ROLE_TAG] == schema.ROLE_STUDY)
    final = [r for r in found if r.data.tags[schema.ROLE_TAG] == schema.ROLE_FINAL]
    assert len(final) == 1 and final[0].info.status == "FINISHED"
    assert by_name["trial-1"].info.status == "FAILED"

    # the long trial: one point per interval while it ran (steps 0, 1, ...), and its last
    hung = by_name["trial-0"]
    history = sorted(client.get_metric_history(hung.info.run_id, CPU), key=lambda m: m.step)
    assert [m.step for m in history] == list(range(len(history)))
    assert len(history) >= 4, [m.step for m in history]  # 2.6 s / 0.5 s, with slack for CPU load
    assert all(0.0 <= m.value <= 100.0 for m in history)
    assert hung.info.start_time <= history[0].timestamp
    assert history[-1].timestamp <= hung.info.end_time  # recorded before the run ended
    # every run, short or failed or final: the same system/ names, with at least one point
    names = {k for k in hung.data.metrics if k.startswith("system/")}
    assert {CPU, MEMORY, "system/system_memory_usage_percentage"} <= names
    for run in (by_name["trial-1"], by_name["trial-2"], *final):
        assert {k for k in run.data.metrics if k.startswith("system/")} == names, run.info.run_name
        assert run.data.metrics[MEMORY] > 0
    # not the parent run: the trials' runs cover the study's time
    assert not [k for k in parent.data.metrics if k.startswith("system/")]
    # every monitor stopped with its run: no thread left, nothing registered
    assert len(monitor_threads()) == before == 0
    assert runs.monitored_runs() == []


def test_an_interrupted_trial_stops_its_monitor(quick, compose):
    fake = FakeFineTune()
    fake.on_step = raise_at(5, KeyboardInterrupt(), lambda cfg: fake.started == 2)
    overrides = [*quick, "study.n_trials=3"]
    with pytest.raises(KeyboardInterrupt):
        run_sweep(compose(overrides), finetune=fake)
    client, found = all_runs(overrides, compose)
    killed = [
        r
        for r in found
        if r.info.status == "KILLED" and r.data.tags[schema.ROLE_TAG] == schema.ROLE_TRIAL
    ]
    assert len(killed) == 1
    assert client.get_metric_history(killed[0].info.run_id, CPU)
    assert monitor_threads() == [] and runs.monitored_runs() == []


def test_system_metrics_false_records_none_and_starts_no_monitor(quick, compose, monkeypatch):
    fake = FakeFineTune(on_step=hang_at(2, 1.2, lambda cfg: fake.started == 1))
    overrides = [*quick, "study.n_trials=2", "tracking.system_metrics=false"]
    started: list[str] = []
    original = threading.Thread.start

    def spy(self: threading.Thread) -> None:
        started.append(self.name)
        original(self)

    monkeypatch.setattr(threading.Thread, "start", spy)
    run_sweep(compose(overrides), finetune=fake)
    monkeypatch.undo()
    _, found = all_runs(overrides, compose)
    trial_runs = [r for r in found if r.data.tags[schema.ROLE_TAG] == schema.ROLE_TRIAL]
    assert len(trial_runs) == 2
    assert all(not k.startswith("system/") for r in trial_runs for k in r.data.metrics)
    assert MONITOR_THREAD not in started
    assert any(k.startswith("val/") or k == "steps_trained" for k in trial_runs[0].data.metrics)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_without_psutil_one_warning_and_the_study_goes_on(quick, compose, monkeypatch):
    monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil raises ImportError
    monkeypatch.setattr(runs, "_warned", set())
    overrides = [*quick, "study.n_trials=3"]
    collect = Collect()
    logger = logging.getLogger("harness.records.runs")
    logger.addHandler(collect)
    try:
        summary = run_sweep(compose(overrides), finetune=FakeFineTune())
    finally:
        logger.removeHandler(collect)
    assert summary.complete == 3
    warnings = [m for m in collect.messages if "system metrics" in m]
    assert len(warnings) == 1 and "pip install psutil" in warnings[0], warnings
    _, found = all_runs(overrides, compose)
    assert all(not k.startswith("system/") for r in found for k in r.data.metrics)
    assert monitor_threads() == []


def test_the_interval_must_be_positive(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(ConfigError, match=r"tracking\.system_metrics_interval"):
        Tracker(uri, None, "x", system_metrics_interval=0)
    with pytest.raises(ConfigError, match=r"tracking\.system_metrics_interval"):
        Tracker(uri, None, "x", system_metrics_interval="often")  # type: ignore[arg-type]
