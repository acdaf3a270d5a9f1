"""The final stage's record (the study attribute ``harness.final``) and how it reads: per
configuration re-run, its seeds' validation values with mean ± sd; the chosen one; the test score.

Written by :mod:`harness.study.final`; read by the summary, the report, the parent run's
description and the export. Kept in Optuna's storage, like every other record of the study.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import optuna

from harness.records import schema, trials


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def companion(study: Any) -> Any:
    """The study's final-stage companion study, or None before the final stage ran."""
    try:
        return optuna.load_study(study_name=trials.final_study_name(study.study_name),
                                 storage=study._storage)
    except KeyError:
        return None


def record(study: Any) -> dict[str, Any] | None:
    return study.user_attrs.get(schema.FINAL_ATTR)


def lines(final: dict[str, Any] | None, metric: str, search_best: Any = None) -> list[str]:
    """The final stage in a few lines (empty when it did not run)."""
    if not final:
        return []
    if final.get("skipped"):
        return [f"Final stage: skipped ({final['skipped']})."]
    out = [f"Final stage: the {len(final['configs'])} best configuration(s) trained again with "
           f"{final['seeds']} fresh seed(s) each, validation {metric} mean ± sd over the seeds"
           + (f" (the search's best single trial: trial {search_best.number}, "
              f"{trials.study_value(search_best):.4f})" if search_best is not None else "")
           + ":"]
    for number, config in final["configs"].items():
        seeds = ", ".join(f"{v:.4f}" for v in config["values"].values())
        mark = "  <- chosen" if int(number) == final["trial"] else ""
        method = f"{config['method']}, " if config.get("method") else ""
        out.append(f"  trial {number} ({method}its own run {config['trial_value']:.4f}): "
                   f"{config['mean']:.4f} ± {config['sd']:.4f} (seeds: {seeds}){mark}")
    out.append(f"Chosen configuration: trial {final['trial']} (the best mean); its seed "
               f"{final['seed']} ({final['seed_value']:.4f}) is the study's best checkpoint.")
    test = final.get("test") or {}
    if test.get("values"):
        out.append(f"Test {metric} of the chosen configuration's seeds (scored once, after the "
                   f"choice): {test['mean']:.4f} ± {test['sd']:.4f}; its best seed "
                   f"{test['values'].get(str(final['seed']), float('nan')):.4f}.")
    else:
        out.append(f"Test {metric}: {test.get('none', 'not scored')}.")
    return out


def parent_metrics(final: dict[str, Any] | None, metric: str) -> dict[str, float]:
    """The parent run's metrics of the final stage's choice."""
    if not final or final.get("skipped"):
        return {}
    chosen = final["configs"][str(final["trial"])]
    out = {schema.FINAL_METRIC.format(split="val", metric=metric, stat="mean"): chosen["mean"],
           schema.FINAL_METRIC.format(split="val", metric=metric, stat="std"): chosen["sd"],
           schema.FINAL_TRIAL_METRIC: float(final["trial"])}
    test = final.get("test") or {}
    if test.get("values"):
        out[schema.FINAL_METRIC.format(split="test", metric=metric, stat="mean")] = test["mean"]
        out[schema.FINAL_METRIC.format(split="test", metric=metric, stat="std")] = test["sd"]
    return out
