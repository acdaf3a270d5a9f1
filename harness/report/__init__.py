"""The study report: a table of the trials, plots, one HTML page; saved beside the study and
logged to its parent MLflow run.

Written at the end of every sweep (``report.enabled``) and by ``python -m harness.report`` for
any study in a storage. A study with few or no completed trials still gets a report, which says
what is missing and why.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from harness.base.errors import first_line
from harness.base.files import replace_folder
from harness.base.output_folders import check_replaceable, mark
from harness.base.secrets import mask
from harness.config.schema import PLOTS
from harness.records import schema, trials
from harness.records.compute import study_compute
from harness.records.final import companion, recipe_lines
from harness.records.final import lines as final_lines
from harness.records.final import record as final_record
from harness.report.page import render
from harness.report.plots import draw
from harness.report.table import Row, format_table, trial_rows, write_csv

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from harness.records.tracker import Tracker

__all__ = ["PLOTS", "Report", "write_report"]

log = logging.getLogger(__name__)


@dataclass
class Report:
    folder: Path
    table: str
    plots: dict[str, Path] = field(default_factory=dict)  # name -> PNG (inside folder)
    missing: dict[str, str] = field(default_factory=dict)  # plot name -> why not drawn
    notes: list[str] = field(default_factory=list)  # what the study lacks
    pareto: list[str] = field(default_factory=list)
    mlflow_uri: str | None = None  # where the parent run holds it

    @property
    def page(self) -> Path:
        return self.folder / "report.html"

    def format(self) -> str:
        lines = [self.table]
        lines += [f"Pareto front: {p}" for p in self.pareto]
        lines += [f"Note: {n}" for n in self.notes]
        drawn = ", ".join(self.plots) or "none"
        lines.append(f"Report: {self.page} (plots: {drawn})")
        lines += [f"  not drawn: {name}: {why}" for name, why in self.missing.items()]
        if self.mlflow_uri:
            lines.append(f"  in MLflow: {self.mlflow_uri}")
        return "\n".join(lines)


def write_report(study: optuna.Study, cfg: DictConfig, tracker: Tracker | None = None) -> Report:
    """Write the report of ``study`` into ``cfg.report.dir`` (replacing an earlier one as a
    whole) and, when ``tracker`` has the study's parent run, log it there as ``report/``."""
    report_cfg = cfg.report
    metric = str(cfg.study.metric)
    multi = len(study.directions) > 1
    second = str(cfg.study.get("second_objective") or "second objective") if multi else None
    params = key_params(study, int(report_cfg.max_params))
    rows = trial_rows(study)
    folder = Path(str(report_cfg.dir))
    check_replaceable(
        "report.dir",
        folder,
        "report",
        study.study_name,
        cfg,
        default=Path(str(cfg.study.output_dir)) / "report",
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        names = [str(n) for n in report_cfg.plots] + (
            ["pareto"] if multi and "pareto" not in report_cfg.plots else []
        )
        name, sign = trials.pruning_signal(cfg.study)
        signal = None if name == metric else f"{'-' if sign < 0 else ''}{name} (pruning signal)"
        plots, missing = draw(study, names, scratch, params, metric, second, signal)
        report = Report(
            folder=folder,
            table=format_table(rows, params, metric, second),
            missing=missing,
            notes=_notes(study, rows),
        )
        report.pareto = [
            f"trial {r.number}: {metric} {r.value:.4f}, {second} {r.second:,.6g}"
            for r in rows
            if "pareto" in r.marks and r.value is not None and r.second is not None
        ]
        all_params = sorted({p for r in rows for p in r.params})
        write_csv(rows, all_params, scratch / "trials.csv", metric, second)
        (scratch / "trials.txt").write_text(report.table + "\n")
        (scratch / "report.html").write_text(
            render(
                f"Study {study.study_name}",
                _facts(study, cfg),
                report.notes + _errors(study),
                report.table,
                plots,
                missing,
                report.pareto,
            )
        )
        scratch.chmod(0o755)  # mkdtemp's folder is private; the report is not
        mark(scratch, "report", study.study_name)
        replace_folder(folder, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report.plots = {name: folder / path.name for name, path in plots.items()}
    if tracker is not None and tracker.parent_run_id and report_cfg.get("mlflow", True):
        try:
            report.mlflow_uri = tracker.log_study_folder(folder, schema.REPORT_ARTIFACT)
        except Exception as exc:  # the local report stands; MLflow is a view
            log.warning("could not log the report to MLflow: %s", mask(first_line(exc)))
    return report


def key_params(study: optuna.Study, limit: int) -> list[str]:
    """Up to ``limit`` param names, the most important first (fANOVA, where it can be
    computed), then in the order trials sampled them."""

    names: list[str] = []
    for trial in study.get_trials(deepcopy=False):
        names += [p for p in trial.params if p not in names]
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ordered = names
    if len(complete) >= 2:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importance = optuna.importance.get_param_importances(
                    study, target=(lambda t: t.values[0]) if len(study.directions) > 1 else None
                )
            ordered = list(importance) + [n for n in names if n not in importance]
        except Exception:  # too few trials, or no param varied: keep the sampling order
            pass
    return ordered[:limit]


def _notes(study: optuna.Study, rows: list[Row]) -> list[str]:
    counts = trials.count(study)
    notes = []
    if not rows:
        notes.append("The study has no trials yet.")
    elif counts["complete"] == 0:
        notes.append(
            f"No trial completed ({counts['pruned']} pruned, {counts['failed']} failed, "
            f"{counts['running']} running): there is no best trial and no checkpoint "
            "to export; the table shows each pruned trial's best evaluation before it "
            "stopped."
        )
    elif counts["complete"] == 1:
        notes.append(
            "Only one trial completed: nothing to compare it with (importances and "
            "parallel coordinates need at least two)."
        )
    if counts["running"]:
        notes.append(f"{counts['running']} trial(s) still running: this report is a snapshot.")
    return notes


def _errors(study: optuna.Study) -> list[str]:
    """One line per failed trial: its error (or why it was interrupted)."""

    out = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        why = trials.failure_reason(trial).splitlines()[0]
        out.append(f"trial {trial.number} failed: {why}")
    return out


def _facts(study: optuna.Study, cfg: DictConfig) -> list[tuple[str, str]]:
    counts = trials.count(study)
    facts = [
        ("study", study.study_name),
        ("storage", mask(str(cfg.study.storage))),
        ("metric", f"validation {cfg.study.metric} ({trials.direction(study)})"),
        (
            "trials",
            f"{counts['finished']} finished of {cfg.study.n_trials}: "
            f"{counts['complete']} complete, {counts['pruned']} pruned, "
            f"{counts['failed']} failed, {counts['running']} running",
        ),
    ]
    best = trials.best_trial(study)
    if best is not None:
        facts.append(("best", f"trial {best.number}: {trials.study_value(best):.4f}"))
        facts += [(f"  {k}", str(v)) for k, v in best.params.items()]
    compute = study_compute(study, companion(study)).format()
    if compute:
        facts.append(("compute", compute.removeprefix("Compute: ")))
    facts += [
        ("final stage" if i == 0 else "", line.strip())
        for i, line in enumerate(
            final_lines(final_record(study), str(cfg.study.metric))
            + recipe_lines(final_record(study) or {}, str(cfg.study.metric))
        )
    ]
    paused = trials.paused_line(study, counts).strip()
    if paused:
        facts.append(("pauses", paused.removeprefix("Paused and promoted: ")))
    run_id = study.user_attrs.get(schema.PARENT_RUN_ATTR)
    if run_id:
        facts.append(("MLflow parent run", f"{run_id} at {mask(str(cfg.tracking.uri))}"))
    facts.append(("written", time.strftime("%Y-%m-%d %H:%M:%S %Z")))
    return facts
