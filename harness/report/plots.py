"""The report's plots: Optuna's matplotlib visualisations, saved as PNG files.

Each plot needs something of the study (completed trials, reported curves, two objectives);
where that is missing the plot is skipped and the reason is returned instead of a file.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from harness.base.errors import first_line
from harness.config.schema import PLOTS
from harness.records import schema, trials
from harness.report.expected_max import expected_max_curve

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

TITLES = {
    "history": "Optimization history",
    "intermediate": "Validation curves (intermediate values; pruned trials included)",
    "expected_max": "Expected best validation value against trials and training steps",
    "importances": "Parameter importances (fANOVA)",
    "parallel": "Parallel coordinates",
    "slice": "Slice: value against each parameter",
    "pareto": "Pareto front",
}


def draw(
    study: optuna.Study,
    names: list[str],
    folder: Path,
    params: list[str],
    metric: str,
    second_objective: str | None = None,
    signal: str | None = None,
) -> tuple[dict[str, Path], dict[str, str]]:
    """Draw the plots ``names`` of ``study`` into ``folder``: ``({name: png}, {name: why
    it is missing})``. ``signal``: what the trials reported to the pruner, where it is not
    the study metric (e.g. "-loss")."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    multi = len(study.directions) > 1
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    curves = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    # Any: the plot functions' keyword arguments (a target function, its name)
    target: dict[str, Any] = (
        {"target": lambda t: t.values[0], "target_name": metric}
        if multi
        else {"target_name": metric}
    )
    plotted = [p for p in params if any(p in t.params for t in complete)]

    def needs(n: int) -> str | None:
        if len(complete) >= n:
            return None
        have = f"{len(complete)} complete trial" + ("" if len(complete) == 1 else "s")
        return f"needs at least {n} complete trial{'s' if n > 1 else ''} (the study has {have})"

    recipes: dict[str, tuple[str | None, Callable[[], Axes | np.ndarray]]] = {
        "history": (
            needs(1),
            lambda: optuna.visualization.matplotlib.plot_optimization_history(study, **target),
        ),
        "intermediate": (
            None
            if curves
            else (
                "no trial reported validation values while training"
                + (
                    " (two-objective studies are not pruned, so their trials report none)"
                    if multi
                    else ""
                )
            ),
            lambda: optuna.visualization.matplotlib.plot_intermediate_values(study),
        ),
        "expected_max": (
            "a two-objective study has no single best value" if multi else needs(2),
            lambda: _expected_max(study, complete, metric),
        ),
        "importances": (
            needs(2) or _varies(complete, plotted),
            lambda: optuna.visualization.matplotlib.plot_param_importances(
                study, params=_shared(complete, plotted) or None, **target
            ),
        ),
        "parallel": (
            needs(2),
            lambda: optuna.visualization.matplotlib.plot_parallel_coordinate(
                study, params=plotted or None, **target
            ),
        ),
        "slice": (
            needs(1),
            lambda: optuna.visualization.matplotlib.plot_slice(
                study, params=plotted or None, **target
            ),
        ),
        "pareto": (
            None
            if multi and complete
            else ("a one-objective study has no Pareto front" if not multi else needs(1)),
            lambda: optuna.visualization.matplotlib.plot_pareto_front(
                study, target_names=[metric, second_objective or "second objective"]
            ),
        ),
    }
    files: dict[str, Path] = {}
    missing: dict[str, str] = {}
    for name in names:
        if name not in recipes:
            missing[name] = f"unknown plot (known: {', '.join(PLOTS)})"
            continue
        why, plot = recipes[name]
        if why:
            missing[name] = why
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "experimental", empty data, tight_layout
                axes = plot()
                figure = _figure(axes)
                panels = len(axes.flat) if hasattr(axes, "flat") else 1
                figure.set_size_inches(max(8.0, 3.2 * panels), 5.5)
                if name == "intermediate" and not isinstance(axes, np.ndarray):
                    _mark_pruned(axes, study, signal or metric)
                if name not in ("slice", "parallel"):  # their colour bars defeat tight_layout
                    figure.tight_layout()
                path = folder / f"{name}.png"
                figure.savefig(path, dpi=100, bbox_inches="tight")
            files[name] = path
        except Exception as exc:  # a plot that cannot be drawn says why; the report goes on
            missing[name] = f"could not be drawn: {first_line(exc)}"
            log.debug("plot %s failed", name, exc_info=True)
        finally:
            plt.close("all")
    return files, missing


def _mark_pruned(axes: Axes, study: optuna.Study, metric: str) -> None:
    """Validation curves: pruned trials dashed and named so in the legend; axes labelled."""
    from matplotlib.ticker import MaxNLocator

    every = {t.number: t for t in study.get_trials(deepcopy=False)}
    for line in axes.get_lines():
        label = str(line.get_label())
        if label.startswith("Trial") and label[5:].isdigit():
            number = int(label[5:])
            trial = every.get(number)
            pruned = trial is not None and trial.state.name == "PRUNED"
            word = (
                "paused" if trial is not None and trials.paused_at(trial) is not None else "pruned"
            )
            source = trial.user_attrs.get(schema.CONTINUES_ATTR) if trial is not None else None
            line.set_label(
                f"trial {number}"
                + (f" (continues {source})" if source is not None else "")
                + (f" ({word})" if pruned else "")
            )
            if pruned:
                line.set_linestyle("--")
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    axes.set_xlabel("evaluation")
    axes.set_ylabel(f"validation {metric}")
    axes.set_title("Validation curves (dashed: pruned or paused)")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def _expected_max(study: optuna.Study, complete: list[FrozenTrial], metric: str) -> np.ndarray:
    """Expected best of n complete trials (one curve per method in a methods study), against n
    and against the training steps the study spent per complete trial (pruned ones included)."""
    import matplotlib.pyplot as plt

    direction = "minimize" if study.direction.name == "MINIMIZE" else "maximize"
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    steps = sum(t.user_attrs.get(schema.STEPS_TRAINED_ATTR) or 0 for t in finished)
    per_trial = steps / len(complete) if steps else None
    groups: dict[str, list[float]] = {}
    for t in complete:
        label = str(t.params.get(schema.METHOD_PARAM, "all trials"))
        groups.setdefault(label, []).append(trials.study_value(t))
    axes: np.ndarray
    _, axes = plt.subplots(1, 2 if per_trial else 1, squeeze=False)
    for label, values in groups.items():
        curve = expected_max_curve(values, direction)
        for ax, scale in zip(axes.flat, (1.0, per_trial), strict=False):
            x = curve.trials * scale
            ax.plot(x, curve.mean, marker="o", label=f"{label} ({len(values)} complete)")
            ax.fill_between(x, curve.low, curve.high, alpha=0.2)
    axes.flat[0].set_xlabel("trials (complete)")
    if per_trial:
        axes.flat[1].set_xlabel(
            f"training steps ({per_trial:,.0f} per complete trial, pruned included)"
        )
    for ax in axes.flat:
        ax.set_ylabel(f"expected best validation {metric}")
        ax.legend(fontsize="small")
    axes.flat[0].set_title("Expected best of n trials (90% bootstrap band)")
    return axes


def _figure(axes: Axes | np.ndarray) -> Figure:
    """The figure of what an Optuna plot function returned (one axes or an array of them)."""
    from matplotlib.figure import Figure

    first = axes.flat[0] if isinstance(axes, np.ndarray) else axes
    figure = first.figure
    return figure if isinstance(figure, Figure) else figure.figure  # a subfigure's root


def _shared(complete: list[FrozenTrial], params: list[str]) -> list[str]:
    """The params every completed trial has (importances need them in every trial)."""
    return [p for p in params if all(p in t.params for t in complete)]


def _varies(complete: list[FrozenTrial], params: list[str]) -> str | None:
    """Why importances cannot be computed, or None: some shared param must take two values."""
    shared = _shared(complete, params)
    if not shared:
        return "no parameter is shared by every complete trial"
    if not any(len({repr(t.params[p]) for t in complete}) > 1 for p in shared):
        return "no parameter took more than one value among the complete trials"
    return None
