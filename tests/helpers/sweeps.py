"""Test helpers: a finished quick sweep, a sweep in a subprocess (to kill or interrupt), and the
study's records in the Optuna storage and the MLflow store, checked against each other."""

from __future__ import annotations

import os
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient

from harness.base.storages import load_study
from harness.records import schema
from harness.study import run_sweep
from tests.helpers.configs import compose, overrides_in
from tests.helpers.processes import as_foreground_job

ROOT = Path(__file__).resolve().parents[2]
TrialState = optuna.trial.TrialState
RUN_STATUS = {
    TrialState.COMPLETE: {"FINISHED"},
    TrialState.PRUNED: {"FINISHED"},
    TrialState.FAIL: {"FAILED", "KILLED"},
}


class SweepProcess:
    """``python -m harness.sweep OVERRIDES`` in a subprocess, its stderr read line by line."""

    def __init__(self, overrides: list[str], faults: str = "") -> None:
        env = {**os.environ, "HARNESS_FAULTS": faults, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness.sweep", *overrides],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=as_foreground_job,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        self.stdout = ""
        self._out: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)
            self.lines.put(line)

    def _read_stdout(self) -> None:
        self._out.extend(self.proc.stdout)

    def wait_for(self, text: str, timeout: float = 240) -> None:
        """Block until a stderr line contains ``text`` (fails if the process ends first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if text in self.lines.get(timeout=0.5):
                    return
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
        self.proc.kill()
        raise AssertionError(f"never saw {text!r}; stderr:\n{''.join(self.stderr)[-4000:]}")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 300) -> int:
        """The exit code; a sweep still running after ``timeout`` seconds is killed (and the
        test fails with TimeoutExpired) instead of being waited for forever."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        for reader in self._readers:
            reader.join(timeout=10)
        self.stdout = "".join(self._out)
        return code

    @property
    def err(self) -> str:
        return "".join(self.stderr)


def stores(overrides: list[str]):
    """(cfg, study, client, parent run, {trial number: child run}); asserts there is exactly one
    parent run, at most one child run per trial number and no stray run."""
    cfg = compose(overrides)
    study = load_study(str(cfg.study.storage), str(cfg.study.name))
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    experiment = client.get_experiment_by_name(cfg.study.name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get(schema.ROLE_TAG) == schema.ROLE_STUDY]
    children = {
        int(r.data.tags[schema.NUMBER_TAG]): r
        for r in runs
        if r.data.tags.get(schema.ROLE_TAG) == schema.ROLE_TRIAL
    }
    assert len(parents) == 1 and len(runs) == 1 + len(children), "a stray or duplicated run"
    return cfg, study, client, parents[0], children


def assert_consistent(overrides: list[str], n_trials: int):
    """A study that ran to its end: exactly ``n_trials`` finished trials, nothing RUNNING or
    WAITING, one MLflow run per Optuna trial with the matching state, the parent closed."""
    cfg, study, client, parent, children = stores(overrides)
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states, states
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == n_trials
    assert sorted(children) == [t.number for t in study.trials]
    for trial in study.trials:
        run = children[trial.number]
        assert run.data.tags[schema.STATE_TAG] == trial.state.name, trial.number
        assert run.info.status in RUN_STATUS[trial.state], (trial.number, run.info.status)
        assert run.data.tags[schema.PARENT_RUN_TAG] == parent.info.run_id
    assert parent.info.status == "FINISHED"
    return cfg, study, client, parent, children


def finished_trials(study) -> dict[int, tuple]:
    """What must never change once a trial has finished."""
    return {
        t.number: (t.state, t.params, t.values, t.datetime_complete, t.intermediate_values)
        for t in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    }


def finished_sweep(
    tmp_path_factory, label: str, tiny_model_dir: Path, sentiment_files: dict, *extra: str
) -> tuple[list[str], object]:
    """Run a quick sweep (the quick overrides plus ``extra``) in a fresh folder, for a module's
    tests that only read it: ``(overrides, summary)``."""
    folder = tmp_path_factory.mktemp(label)
    overrides = [*overrides_in(folder, tiny_model_dir, sentiment_files), *extra]
    return overrides, run_sweep(compose(overrides))


def nothing_created(tmp_path: Path) -> None:
    study_db = tmp_path / "sweeps" / "optuna.db"
    assert not study_db.exists() or not _rows(study_db, "studies"), "a study was created"
    mlflow_db = tmp_path / "mlruns" / "mlflow.db"
    assert not mlflow_db.exists() or not _rows(mlflow_db, "runs"), "an MLflow run was created"
    # not even an empty store: the tracking store is made only once the input passed its checks
    assert not mlflow_db.exists(), "the MLflow store was created"
    assert not (tmp_path / "mlruns").exists(), "the MLflow folder was created"
    assert not (tmp_path / "sweeps" / "study").exists(), "the output folder was created"


def _rows(db: Path, table: str) -> list:
    with sqlite3.connect(db) as conn:
        exists = conn.execute("SELECT name FROM sqlite_master WHERE name=?", (table,)).fetchall()
        return conn.execute(f"SELECT * FROM {table}").fetchall() if exists else []
