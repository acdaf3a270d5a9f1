"""The report's table: one row per trial (state, value, duration, steps trained, key params).

Own rows rather than ``study.trials_dataframe()``: the table needs a pruned trial's best
value before it stopped (Optuna keeps its last report, which may be another metric), the marks
(best, best of its method, Pareto front), one block per method and the steps each trial
trained, none of which the dataframe carries.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.records import schema, trials

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial


@dataclass
class Row:
    number: int
    state: str  # COMPLETE, PRUNED, PAUSED, FAIL, RUNNING, WAITING; a continuation: "<-N"
    value: float | None  # the study metric: the best evaluation (a pruned trial's before it
    #                      stopped; from before that was recorded, its last report)
    second: float | None  # the second objective, in a two-objective study
    duration_s: float | None
    steps: int | None  # optimizer steps trained (None: not recorded, e.g. a failed trial)
    params: dict[str, object]  # Optuna's param values (float, int, str, bool, None)
    method: str | None = None  # a methods study's method
    marks: list[str] = field(default_factory=list)  # "best", "best of method", "pareto"


def trial_rows(study: optuna.Study) -> list[Row]:
    """Every trial of ``study``, in trial order, with its marks."""
    best = trials.best_trial(study)
    best_of_method = {t.number for t in trials.best_per_method(study).values()}
    multi = len(study.directions) > 1
    pareto = {t.number for t in study.best_trials} if multi else set()
    rows = []
    for trial in study.get_trials(deepcopy=False):
        value, second = _values(trial, multi)
        state = "PAUSED" if trials.paused_at(trial) is not None else trial.state.name
        if trials.is_continuation(trial):  # the paused trial it continues
            state += f" <-{trial.user_attrs[schema.CONTINUES_ATTR]}"
        row = Row(
            number=trial.number,
            state=state,
            value=value,
            second=second,
            duration_s=trial.duration.total_seconds() if trial.duration else None,
            steps=trial.user_attrs.get(schema.STEPS_TRAINED_ATTR),
            params=dict(trial.params),
            method=trial.params.get(schema.METHOD_PARAM),
        )
        if best is not None and trial.number == best.number:
            row.marks.append("best")
        if trial.number in best_of_method:
            row.marks.append("best of method")
        if trial.number in pareto:
            row.marks.append("pareto")
        rows.append(row)
    return rows


def _values(trial: FrozenTrial, multi: bool) -> tuple[float | None, float | None]:
    """(study metric, second objective) of a trial; a pruned trial's best value before it
    stopped (from before that was recorded: its last reported value)."""
    if trial.user_attrs.get(schema.BEST_SO_FAR_ATTR) is not None:  # pruned (Optuna's value
        return float(trial.user_attrs[schema.BEST_SO_FAR_ATTR]), None  # is its last report)
    if trial.values:
        return trial.values[0], (trial.values[1] if multi and len(trial.values) > 1 else None)
    if trial.intermediate_values:
        return trial.intermediate_values[max(trial.intermediate_values)], None
    return None, None


def short_names(params: list[str]) -> dict[str, str]:
    """Column headers: the last part of a dotted path (``peft.config.r`` → ``r``), a methods
    study's ``lora/peft.config.r`` → ``lora/r``; the full name where two would clash."""

    def short(name: str) -> str:
        prefix, _, path = name.rpartition("/")
        return f"{prefix}/{path.rsplit('.', 1)[-1]}" if prefix else path.rsplit(".", 1)[-1]

    shorts = [short(p) for p in params]
    return {p: (s if shorts.count(s) == 1 else p) for p, s in zip(params, shorts, strict=True)}


def format_table(
    rows: list[Row], params: list[str], metric: str, second_objective: str | None = None
) -> str:
    """A fixed-width table; ``*`` marks the best trial, ``+`` a method's best, ``P`` the
    Pareto front. A methods study gets one block per method."""
    names = short_names(params)
    header = ["", "trial", "state", metric]
    if second_objective:
        header.append(second_objective)
    header += ["duration", "steps", *names.values()]
    methods = sorted({r.method for r in rows if r.method is not None})
    blocks: list[tuple[str | None, list[Row]]] = [(None, rows)]
    if methods:
        blocks = [(m, [r for r in rows if r.method == m]) for m in methods]
        unsampled = [r for r in rows if r.method is None]  # failed before sampling a method
        if unsampled:
            blocks.append((None, unsampled))
    body: list[list[str] | str] = []
    for method, block in blocks:
        if methods:
            body.append(f"method {method}" if method else "no method (failed before sampling)")
        for row in block:
            mark = (
                "*" if "best" in row.marks else "+" if "best of method" in row.marks else ""
            ) + ("P" if "pareto" in row.marks else "")
            cells = [mark, str(row.number), row.state, _number(row.value)]
            if second_objective:
                cells.append(_number(row.second, ",.6g"))
            cells += [_duration(row.duration_s), "-" if row.steps is None else str(row.steps)]
            cells += [_param(row.params.get(p)) for p in params]
            body.append(cells)
    widths = [len(h) for h in header]
    for entry in body:
        if isinstance(entry, list):
            widths = [max(w, len(c)) for w, c in zip(widths, entry, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 3 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out += [f"{cells}:" if isinstance(cells, str) else line(cells) for cells in body]
    legend = ["* best trial"]
    if methods:
        legend.append("+ best of its method")
    if second_objective:
        legend.append("P on the Pareto front")
    out.append(
        "   ".join(legend) + f"   ({metric}: validation, the best evaluation "
        "(a pruned trial's before it stopped); duration: wall "
        "time)"
    )
    return "\n".join(out)


def write_csv(
    rows: list[Row], params: list[str], path: Path, metric: str, second_objective: str | None = None
) -> None:
    """All trials and all params, for a spreadsheet or pandas."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "trial",
                "state",
                metric,
                *([second_objective] if second_objective else []),
                "duration_s",
                "steps_trained",
                "marks",
                *params,
            ]
        )
        for row in rows:
            writer.writerow(
                [
                    row.number,
                    row.state,
                    "" if row.value is None else row.value,
                    *([row.second if row.second is not None else ""] if second_objective else []),
                    "" if row.duration_s is None else round(row.duration_s, 3),
                    "" if row.steps is None else row.steps,
                    ";".join(row.marks),
                    *["" if row.params.get(p) is None else row.params[p] for p in params],
                ]
            )


def _number(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def _param(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
