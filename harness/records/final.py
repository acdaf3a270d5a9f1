"""The final stage's record (the study attribute ``harness.final``) and how it reads: per
configuration re-run, its seeds' validation values with mean ± sd; the chosen one; the test score;
the recipe's seeds and the chosen configuration's paired gain over it.

Written by :mod:`harness.study.final`; read by the summary, the report, the parent run's
description and the export. Kept in Optuna's storage, like every other record of the study.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any, TypedDict

import optuna
from optuna.trial import FrozenTrial

from harness.records import schema, trials

# The record as Optuna stores it: JSON (nested dicts of numbers, strings and lists), read key by
# key; its shape is the one study.final writes and the functions below read.
FinalRecord = dict[str, Any]


class Gain(TypedDict, total=False):
    """A paired gain (chosen minus recipe, seed by seed); empty when no seed is shared."""

    values: dict[str, float]
    mean: float
    sd: float


class _Shipped(TypedDict):
    kind: str
    val: float
    test: float | None


class Shipped(_Shipped, total=False):
    """What the study ships: kind ("ensemble", "soup" or "seed"), its validation and test value
    and (not for a seed) its members."""

    # an ensemble's member records ({name, weight, ...}) or a soup's member names
    members: list[Any]


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def paired_gain(chosen: dict[str, float], recipe: dict[str, float]) -> Gain:
    """Chosen minus recipe, seed by seed (the seeds both have), with mean ± sd."""
    seeds = sorted(set(chosen) & set(recipe), key=int)
    values = {k: chosen[k] - recipe[k] for k in seeds}
    if not values:
        return {}
    mean, sd = mean_sd(list(values.values()))
    return {"values": values, "mean": mean, "sd": sd}


def difference(value: float, metric: str, sd: float | None = None) -> str:
    """A difference of ``metric`` as read: points for a score, the raw change for the loss."""
    if metric == "loss":
        return f"{value:+.4f}" + ("" if sd is None else f" ± {sd:.4f}") + " in loss"
    return f"{100 * value:+.1f}" + ("" if sd is None else f" ± {100 * sd:.1f}") + " points"


def gain_words(gain: Gain, metric: str = "accuracy") -> str:
    """A paired gain (chosen minus recipe), judged: within one standard deviation of 0 is no
    clear gain; for the loss, lower is better."""
    seeds = len(gain["values"])
    points = (
        f"{difference(gain['mean'], metric, gain['sd'])} ({seeds} seed"
        + ("s" if seeds != 1 else "")
        + ")"
    )
    if seeds < 2:
        return f"{points}: one seed cannot tell a gain from noise"
    if abs(gain["mean"]) <= gain["sd"]:
        return f"no clear gain: {points}, within one standard deviation of 0"
    better = gain["mean"] < 0 if metric == "loss" else gain["mean"] > 0
    return points if better else f"{points}: the recipe did better"


def companion(study: optuna.Study) -> optuna.Study | None:
    """The study's final-stage companion study, or None before the final stage ran."""
    try:
        return optuna.load_study(
            study_name=trials.final_study_name(study.study_name), storage=study._storage
        )
    except KeyError:
        return None


def record(study: optuna.Study) -> FinalRecord | None:
    found: FinalRecord | None = study.user_attrs.get(schema.FINAL_ATTR)
    return found


def shipped(final: FinalRecord) -> Shipped:
    """What the study ships (``final.combine``): kind ("ensemble", "soup" or "seed"), its
    validation value, its test value (None: not scored), and its members (an ensemble's:
    records with weights; a soup's: names)."""
    for kind in ("ensemble", "soup"):
        combined = final.get(kind)
        if combined:
            return {
                "kind": kind,
                "val": combined["val"],
                "test": (combined.get("test") or {}).get("value"),
                "members": combined["members"],
            }
    test = (final.get("test") or {}).get("values") or {}
    return {"kind": "seed", "val": final["seed_value"], "test": test.get(str(final["seed"]))}


def shipped_gain(final: FinalRecord) -> float | None:
    """The shipped model's test value minus the recipe's test mean (None: either missing)."""
    test = shipped(final)["test"]
    recipe = ((final.get("recipe") or {}).get("test") or {}).get("mean")
    return None if test is None or recipe is None else float(test - recipe)


def lines(
    final: FinalRecord | None, metric: str, search_best: FrozenTrial | None = None
) -> list[str]:
    """The final stage in a few lines (empty when it did not run)."""
    if not final:
        return []
    if final.get("skipped"):
        return [f"Final stage: skipped ({final['skipped']})."]
    count = len(final["configs"])
    which = (
        f"{count} configuration(s), the search's best and the recipe,"
        if any(c.get("recipe") for c in final["configs"].values())
        else f"the {count} best configuration(s)"
    )
    out = [
        f"Final stage: {which} trained again with "
        f"{final['seeds']} fresh seed(s) each, validation {metric} mean ± sd over the seeds"
        + (
            f" (the search's best single trial: trial {search_best.number}, "
            f"{trials.study_value(search_best):.4f})"
            if search_best is not None
            else ""
        )
        + ":"
    ]
    for number, config in final["configs"].items():
        seeds = ", ".join(f"{v:.4f}" for v in config["values"].values())
        mark = "  <- chosen" if int(number) == final["trial"] else ""
        method = f"{config['method']}, " if config.get("method") else ""
        own = (
            "not completed in the search"
            if config.get("trial_value") is None
            else f"its own run {config['trial_value']:.4f}"
        )
        label = f"trial {number}" + (" (the recipe)" if config.get("recipe") else "")
        out.append(
            f"  {label} ({method}{own}): "
            f"{config['mean']:.4f} ± {config['sd']:.4f} (seeds: {seeds}){mark}"
        )
    alone = final.get("ships", "seed") == "seed"
    out.append(
        f"Chosen configuration: trial {final['trial']} (the best mean); its seed "
        f"{final['seed']} ({final['seed_value']:.4f}) is "
        + ("the study's best checkpoint." if alone else "its best seed.")
    )
    test = final.get("test") or {}
    if test.get("values"):
        out.append(
            f"Test {metric} of the chosen configuration's seeds (scored once, after the "
            f"choice): {test['mean']:.4f} ± {test['sd']:.4f}; its best seed "
            f"{test['values'].get(str(final['seed']), float('nan')):.4f}."
        )
    else:
        out.append(f"Test {metric}: {test.get('none', 'not scored')}.")
    ship = shipped(final)
    if ship["kind"] != "seed":
        what = (
            f"an ensemble of {len(ship['members'])} models the study trained ("
            + ", ".join(f"{m['name']} x{m['weight']:.2f}" for m in ship["members"])
            + ")"
            if ship["kind"] == "ensemble"
            else f"a soup (the weight average) of {', '.join(ship['members'])}"
        )
        out.append(
            f"Shipped: {what}, chosen on validation: {metric} {ship['val']:.4f} (the "
            f"chosen seed alone: {final['seed_value']:.4f})"
            + (f"; test {ship['test']:.4f}" if ship["test"] is not None else "")
            + f". It is the study's best (final/{ship['kind']})."
        )
    return out


def recipe_lines(final: FinalRecord, metric: str) -> list[str]:
    """The recipe against the chosen configuration, seed by seed (empty without a recipe)."""
    recipe = final.get("recipe")
    if not recipe:
        return []
    values = ", ".join(f"{k}={v}" for k, v in recipe["params"].items())
    out = [
        f"Recipe (trial {recipe['trial']}: {values}), trained with the same seeds: "
        f"validation {metric} {recipe['mean']:.4f} ± {recipe['sd']:.4f}"
        + (
            f", test {recipe['test']['mean']:.4f} ± {recipe['test']['sd']:.4f}"
            if (recipe.get("test") or {}).get("values")
            else ""
        )
        + "."
    ]
    if final["trial"] == recipe["trial"]:
        return [
            *out,
            "The chosen configuration is the recipe: the search found nothing "
            "better on validation.",
        ]
    gain = recipe.get("gain") or {}
    if gain.get("val"):
        out.append(f"Chosen vs recipe on validation: {gain_words(gain['val'], metric)}.")
    if gain.get("test"):
        out.append(f"Chosen vs recipe on test: {gain_words(gain['test'], metric)}.")
    extra, kind = shipped_gain(final), shipped(final)["kind"]
    if kind != "seed" and extra is not None:
        seeds = len(recipe["test"]["values"])
        sd = recipe["test"]["sd"]
        judged = (
            " (no clear gain: within the recipe's standard deviation)"
            if seeds > 1 and abs(extra) <= sd
            else " (one recipe seed cannot tell a gain from noise)"
            if seeds < 2
            else ""
        )
        out.append(
            f"Shipped {kind} vs recipe on test: {difference(extra, metric)} against "
            f"the recipe's mean over {seeds} seed(s) (sd {difference(sd, metric)[1:]})"
            f"{judged}."
        )
    return out


def parent_metrics(
    final: FinalRecord | None, metric: str, earlier: FinalRecord | None = None
) -> dict[str, float]:
    """The parent run's metrics of the final stage's choice; with the ``earlier`` record it
    replaces, a figure of the earlier choice that this one lacks (its test score, say) reads
    NaN (not measured), rather than staying on the parent run as if it were this choice's."""
    out = _parent_metrics(final, metric)
    if earlier:
        out.update(
            {key: float("nan") for key in _parent_metrics(earlier, metric) if key not in out}
        )
    return out


def _parent_metrics(final: FinalRecord | None, metric: str) -> dict[str, float]:
    if not final or final.get("skipped"):
        return {}
    chosen = final["configs"][str(final["trial"])]
    out = {
        schema.FINAL_METRIC.format(split="val", metric=metric, stat="mean"): chosen["mean"],
        schema.FINAL_METRIC.format(split="val", metric=metric, stat="std"): chosen["sd"],
        schema.FINAL_TRIAL_METRIC: float(final["trial"]),
    }
    test = final.get("test") or {}
    if test.get("values"):
        out[schema.FINAL_METRIC.format(split="test", metric=metric, stat="mean")] = test["mean"]
        out[schema.FINAL_METRIC.format(split="test", metric=metric, stat="std")] = test["sd"]
    ship = shipped(final)
    out[schema.SHIPPED_METRIC.format(split="val", metric=metric)] = ship["val"]
    if ship["test"] is not None:
        out[schema.SHIPPED_METRIC.format(split="test", metric=metric)] = ship["test"]
    gain = shipped_gain(final)
    if gain is not None:
        out[schema.SHIPPED_GAIN_METRIC.format(metric=metric)] = gain
    recipe = final.get("recipe") or {}
    if recipe:
        scores = {"val": recipe, "test": recipe.get("test") or {}}
        for split, score in scores.items():
            if "mean" in score:
                for stat, key in (("mean", "mean"), ("std", "sd")):
                    out[schema.RECIPE_METRIC.format(split=split, metric=metric, stat=stat)] = score[
                        key
                    ]
        for split, gain in (recipe.get("gain") or {}).items():
            if gain:
                for stat, key in (("mean", "mean"), ("std", "sd")):
                    out[schema.GAIN_METRIC.format(split=split, metric=metric, stat=stat)] = gain[
                        key
                    ]
    return out
