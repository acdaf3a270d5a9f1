"""What a study's trials cost, summed from their records: steps trained against the steps their
full budgets plan, samples, FLOPs, wall, CPU and GPU seconds; what pruning saved, what early
stopping saved and what failed trials cost, each apart."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from optuna.trial import TrialState

from harness.records import schema, trials

if TYPE_CHECKING:
    import optuna


@dataclass
class StudyCompute:
    totals: dict[str, float] = field(default_factory=dict)  # finished (complete + pruned) trials
    failed: dict[str, float] = field(default_factory=dict)  # failed trials, up to their failure
    trials: int = 0  # finished trials with a compute record
    failed_trials: int = 0
    saved_by_pruning: float = 0.0  # fraction of the finished trials' planned steps
    saved_by_early_stopping: float = 0.0
    final: dict[str, float] = field(default_factory=dict)  # the final stage's runs (in totals)
    final_runs: int = 0

    def metrics(self) -> dict[str, float]:
        """The parent run's metrics."""
        out = {f"{schema.TOTAL_PREFIX}{k}": v for k, v in self.totals.items()}
        out.update({f"{schema.FAILED_PREFIX}{k}": v for k, v in self.failed.items()})
        out.update({f"final_{k}": v for k, v in self.final.items()})
        if self.trials:
            out[schema.COMPUTE_SAVED_METRIC] = self.saved_by_pruning
            out[schema.EARLY_STOPPING_SAVED_METRIC] = self.saved_by_early_stopping
        return out

    def format(self) -> str:
        """One line for the summary and the report (empty before any trial finished)."""
        if not self.trials:
            return ""
        t = self.totals
        line = (
            f"Compute: {t.get('steps_trained', 0):,.0f} of {t.get('steps_planned', 0):,.0f} "
            f"planned training steps ({self.saved_by_pruning:.1%} saved by pruning"
            + (
                f", {self.saved_by_early_stopping:.1%} by early stopping"
                if self.saved_by_early_stopping
                else ""
            )
            + f"), {t.get('samples_seen', 0):,.0f} samples, "
            f"{t.get('train_flos', 0):.3g} FLOPs, {t.get('wall_time_s', 0):,.0f} s wall, "
            f"{t.get('cpu_time_s', 0):,.0f} s CPU"
        )
        if "gpu_busy_s" in t:
            line += f", {t['gpu_busy_s']:,.0f} s GPU busy"
        if self.final_runs:
            line += (
                f"; of these, the final stage's {self.final_runs} run(s): "
                f"{self.final.get('steps_trained', 0):,.0f} steps, "
                f"{self.final.get('wall_time_s', 0):,.0f} s wall"
            )
        if self.failed_trials:
            line += (
                f"; {self.failed_trials} failed trial(s) cost "
                f"{self.failed.get('steps_trained', 0):,.0f} steps, "
                f"{self.failed.get('wall_time_s', 0):,.0f} s wall"
            )
        return line


def study_compute(study: optuna.Study, final_study: optuna.Study | None = None) -> StudyCompute:
    """The compute of ``study``'s trials, from the record each trial keeps (COMPUTE_ATTR), and
    of its final stage's runs (``final_study``: in the totals, not in what pruning saved).

    A configuration paused and continued (the promotion scheduler), or interrupted with its
    state saved and continued (``study.resume_trials``), plans its budget once, in its first
    trial; its continuations add the steps they trained (an interrupted trial's steps count
    with its configuration's, not as failed compute: they are not trained again). What a
    configuration that ended did not train of its budget was saved by pruning, or by early
    stopping when it completed."""
    out = StudyCompute()
    # configuration -> [planned, trained, complete, ended]
    budgets: dict[int, list[float]] = {}
    for trial in study.get_trials(deepcopy=False):
        figures = trial.user_attrs.get(schema.COMPUTE_ATTR)
        if not isinstance(figures, dict):
            continue
        ended = trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
        saved = trial.state == TrialState.FAIL and trials.interrupted_state(trial) is not None
        if ended or saved:
            out.trials += int(ended)
            later = trials.is_continuation(trial)
            _add(
                out.totals,
                {k: v for k, v in figures.items() if not (later and k == "steps_planned")},
            )
            budget = budgets.setdefault(trials.config_of(trial), [0.0, 0.0, 0.0, 0.0])
            budget[0] += 0 if later else figures.get("steps_planned", 0)
            budget[1] += figures.get("steps_trained", 0)
            budget[2] = max(budget[2], float(trial.state == TrialState.COMPLETE))
            budget[3] = max(budget[3], float(ended))
        elif trial.state == TrialState.FAIL:
            out.failed_trials += 1
            _add(out.failed, figures)
    pruned_saved = sum(max(0.0, p - t) for p, t, done, end in budgets.values() if end and not done)
    early_saved = sum(max(0.0, p - t) for p, t, done, end in budgets.values() if done)
    planned = out.totals.get("steps_planned", 0)
    if planned:
        out.saved_by_pruning = pruned_saved / planned
        out.saved_by_early_stopping = early_saved / planned
    for run in final_study.get_trials(deepcopy=False) if final_study is not None else ():
        figures = run.user_attrs.get(schema.COMPUTE_ATTR)
        if isinstance(figures, dict) and run.state != TrialState.RUNNING:
            out.final_runs += 1
            _add(out.final, figures)
            _add(out.totals, figures)
    return out


def _add(totals: dict[str, float], figures: Mapping[str, object]) -> None:
    for name in schema.COMPUTE_METRICS:
        value = figures.get(name)
        if isinstance(value, int | float):
            totals[name] = totals.get(name, 0) + value
