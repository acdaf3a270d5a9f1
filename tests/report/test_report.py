"""The study report (table, PNG plots, HTML page, logged to the parent run) at the end of a real
tiny sweep and from `python -m harness.report`; studies with one or no completed trial; the
table of a methods study and of a two-objective study; optuna-dashboard on the storage."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from harness.records import schema
from harness.report import write_report
from harness.report.table import format_table, trial_rows
from harness.study import run_sweep
from tests.helpers.servers import free_port
from tests.helpers.sweeps import finished_sweep

PNG = b"\x89PNG\r\n\x1a\n"
PLOTS = ("history", "intermediate", "expected_max", "importances", "parallel", "slice")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_model_dir, sentiment_files, compose):
    """A finished 4-trial tiny LoRA sweep: (overrides, summary, config)."""
    overrides, summary = finished_sweep(
        tmp_path_factory,
        "report",
        tiny_model_dir,
        sentiment_files,
        "study.n_trials=4",
        "train.num_train_epochs=2",
    )
    return overrides, summary, compose(overrides)


@pytest.mark.integration
def test_every_sweep_ends_with_a_report_beside_the_study_and_in_mlflow(finished):
    overrides, summary, cfg = finished
    folder = Path(cfg.report.dir)
    assert folder == Path(cfg.study.output_dir) / "report"
    for name in PLOTS:
        assert (folder / f"{name}.png").read_bytes().startswith(PNG), name
    page = (folder / "report.html").read_text()
    assert page.count("<img") == len(PLOTS)
    assert "Parameter importances" in page and "<h2>Trials</h2>" in page
    table = (folder / "trials.txt").read_text()
    best = summary.best_number
    assert any(line.startswith(f"*  {best} ") for line in table.splitlines()), table
    assert "learning_rate" in table.splitlines()[0] and "steps" in table.splitlines()[0]
    rows = list(csv_rows(folder / "trials.csv"))
    assert [int(r["trial"]) for r in rows] == [0, 1, 2, 3]
    assert all(r["state"] in ("COMPLETE", "PRUNED") and int(r["steps_trained"]) > 0 for r in rows)
    # the sweep printed the table and where the report is
    assert "Report: " in summary.format() and table.splitlines()[0] in summary.format()
    # and logged it to the study's parent run
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    parent = study.user_attrs[schema.PARENT_RUN_ATTR]
    logged = {a.path for a in client.list_artifacts(parent, "report")}
    assert {f"report/{n}.png" for n in PLOTS} | {"report/report.html"} <= logged


def csv_rows(path: Path):
    import csv

    with path.open() as handle:
        yield from csv.DictReader(handle)


@pytest.mark.integration
def test_the_report_command_reads_any_study_and_names_what_is_wrong(
    finished, tmp_path, capsys, monkeypatch
):
    from harness.cli.report import cli

    overrides, _, cfg = finished
    out = tmp_path / "again"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "harness.report",
            f"study.storage={cfg.study.storage}",
            f"study.name={cfg.study.name}",
            f"report.dir={out}",
            f"tracking.uri={cfg.tracking.uri}",
            "report.plots=[history,slice]",
        ],
    )
    cli()
    printed = capsys.readouterr().out
    assert "*  " in printed and f"Report: {out}/report.html" in printed
    assert sorted(p.name for p in out.glob("*.png")) == ["history.png", "slice.png"]

    monkeypatch.setattr(
        sys,
        "argv",
        [
            "harness.report",
            f"study.storage={cfg.study.storage}",
            "study.name=nope",
            f"report.dir={tmp_path}/x",
        ],
    )
    with pytest.raises(SystemExit) as exit_:
        cli()
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2
    assert err == (
        f"error: study.name: no study 'nope' in '{cfg.study.storage}' (studies "
        f"there: {cfg.study.name}); pick one with study.name=NAME"
    )
    missing = tmp_path / "none" / "optuna.db"
    monkeypatch.setattr(sys, "argv", ["harness.report", f"study.storage=sqlite:///{missing}"])
    with pytest.raises(SystemExit):
        cli()
    assert "error: study.storage: no study storage at" in capsys.readouterr().err
    assert not missing.parent.exists() and not (tmp_path / "x").exists()


@pytest.mark.integration
def test_a_study_with_only_pruned_trials_gets_a_report_that_says_what_is_missing(
    sweep_overrides, tmp_path, compose
):
    cfg = compose(
        [
            *sweep_overrides,
            "study.n_trials=2",
            "train.num_train_epochs=1",
            "pruner=threshold",
            "pruner.lower=0.99",
        ]
    )  # every trial is pruned at once
    summary = run_sweep(cfg)
    assert summary.pruned == 2 and summary.complete == 0
    folder = Path(cfg.report.dir)
    assert sorted(p.name for p in folder.glob("*.png")) == ["intermediate.png"]
    page = (folder / "report.html").read_text()
    assert "No trial completed (2 pruned, 0 failed, 0 running)" in page
    assert "Not drawn: needs at least 2 complete trials (the study has 0 complete trials)" in page
    assert "PRUNED" in (folder / "trials.txt").read_text()


@pytest.mark.integration
def test_a_study_with_one_completed_trial_gets_a_report(tmp_path, compose):
    study = optuna.create_study(
        study_name="one", storage=f"sqlite:///{tmp_path}/s.db", direction="maximize"
    )
    study.optimize(lambda t: _fake(t, 0.5), n_trials=1)
    report = write_report(
        study, compose(["+sweep=lora", f"study.output_dir={tmp_path}/one", "study.name=one"])
    )
    assert set(report.plots) == {"history", "intermediate", "slice"}
    assert report.missing["importances"].startswith("needs at least 2 complete trials")
    assert report.missing["expected_max"].startswith("needs at least 2 complete trials")
    assert report.notes == [
        "Only one trial completed: nothing to compare it with (importances "
        "and parallel coordinates need at least two)."
    ]


def _fake(trial, value: float, method: str | None = None, report: bool = True) -> float:
    if method:
        trial.suggest_categorical("method", ["ia3", "lora"])  # the enqueued one
        assert trial.params["method"] == method
        trial.suggest_float(f"{method}/train.learning_rate", 1e-4, 1e-2, log=True)
    else:
        trial.suggest_float("train.learning_rate", 1e-4, 1e-2, log=True)
    for step in (1, 2) if report else ():
        trial.report(value * step / 2, step)
    trial.set_user_attr(schema.STEPS_TRAINED_ATTR, 10)
    return value


def test_a_methods_study_table_has_a_block_per_method_with_each_best_marked():
    study = optuna.create_study(direction="maximize")
    for method, value in [("lora", 0.7), ("ia3", 0.6), ("lora", 0.75), ("ia3", 0.55)]:
        study.enqueue_trial({"method": method})
        study.optimize(lambda t, m=method, v=value: _fake(t, v, m), n_trials=1)
    rows = trial_rows(study)
    table = format_table(
        rows, ["method", "lora/train.learning_rate", "ia3/train.learning_rate"], "accuracy"
    )
    lines = table.splitlines()
    assert lines[0].split() == [
        "trial",
        "state",
        "accuracy",
        "duration",
        "steps",
        "method",
        "lora/learning_rate",
        "ia3/learning_rate",
    ]
    assert lines.index("method ia3:") < lines.index("method lora:")
    ia3 = lines[lines.index("method ia3:") + 1 : lines.index("method lora:")]
    assert [line.split()[:2] for line in ia3] == [["+", "1"], ["3", "COMPLETE"]]
    lora = lines[lines.index("method lora:") + 1 :]
    assert lora[1].split()[:3] == ["*", "2", "COMPLETE"]
    assert "+ best of its method" in lines[-1]


def test_the_expected_best_plot_draws_one_curve_per_method_against_trials_and_steps(
    tmp_path, monkeypatch
):
    import matplotlib.axes

    from harness.report import plots

    study = optuna.create_study(direction="maximize")
    for method, value in [
        ("lora", 0.7),
        ("ia3", 0.6),
        ("lora", 0.75),
        ("ia3", 0.55),
        ("lora", 0.72),
    ]:
        study.enqueue_trial({"method": method})
        study.optimize(lambda t, m=method, v=value: _fake(t, v, m), n_trials=1)
    drawn: list[tuple[str, list[float], list[float]]] = []
    plot = matplotlib.axes.Axes.plot
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "plot",
        lambda self, x, y, **kw: (
            drawn.append((kw["label"], list(x), list(y))),
            plot(self, x, y, **kw),
        )[1],
    )
    files, missing = plots.draw(study, ["expected_max"], tmp_path, [], "accuracy")
    assert missing == {} and files["expected_max"].read_bytes().startswith(PNG)
    # per method, against trials (1..n) then steps (5 trials x 10 steps / 5 complete = 10 each)
    assert [(label, x) for label, x, _ in drawn] == [
        ("lora (3 complete)", [1, 2, 3]),
        ("lora (3 complete)", [10, 20, 30]),
        ("ia3 (2 complete)", [1, 2]),
        ("ia3 (2 complete)", [10, 20]),
    ]
    assert drawn[0][2] == pytest.approx([(0.7 + 0.75 + 0.72) / 3, (0.72 + 0.75 + 0.75) / 3, 0.75])


def test_a_two_objective_table_marks_the_pareto_front():
    study = optuna.create_study(directions=["maximize", "minimize"])
    points = [(0.6, 100.0), (0.7, 300.0), (0.5, 400.0)]  # the third is dominated
    for value, size in points:
        study.optimize(lambda t, v=value, s=size: (_fake(t, v, report=False), s), n_trials=1)
    table = format_table(trial_rows(study), ["train.learning_rate"], "accuracy", "trainable_params")
    lines = table.splitlines()
    assert lines[2].split()[:2] == ["P", "0"] and lines[3].split()[:2] == ["*P", "1"]
    assert lines[4].split()[:2] == ["2", "COMPLETE"]
    assert "trainable_params" in lines[0] and "P on the Pareto front" in lines[-1]


@pytest.mark.integration
def test_optuna_dashboard_serves_the_study_and_its_trials(finished, tmp_path):
    _, summary, cfg = finished
    port = free_port()
    dashboard = Path(sys.executable).parent / "optuna-dashboard"
    log = (tmp_path / "dashboard.log").open("w")
    server = subprocess.Popen(
        [str(dashboard), str(cfg.study.storage), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        studies = _get_json(f"http://127.0.0.1:{port}/api/studies", server)
        [entry] = [s for s in studies["study_summaries"] if s["study_name"] == cfg.study.name]
        detail = _get_json(f"http://127.0.0.1:{port}/api/studies/{entry['study_id']}", server)
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()
    assert entry["directions"] == ["maximize"]
    assert sorted(t["number"] for t in detail["trials"]) == [0, 1, 2, 3]
    assert {t["state"] for t in detail["trials"]} <= {"Complete", "Pruned"}
    best = [t for t in detail["trials"] if t["number"] == summary.best_number][0]
    assert best["values"] == [pytest.approx(summary.best_value)]


def _get_json(url: str, server: subprocess.Popen, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.3)
