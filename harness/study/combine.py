"""What a study ships (``final.combine``): the chosen configuration's best seed (``best``), an
ensemble of the models the study already trained (``ensemble``), a soup of the chosen
configuration's seeds (``soup``), or whichever of the three scores best on validation
(``auto``; ties go to the simpler: the seed, then the soup).

The ensemble's candidates are every model whose checkpoint the study still has after its final
stage: every final-stage run (the chosen configuration's seeds, the other top-k configurations',
the recipe's) and every kept search trial (``checkpoints.keep``). Each checkpoint carries the
validation logits of the evaluation its weights scored (``val_logits.npy``), so selection
(:func:`harness.train.ensemble.greedy_selection`, Caruana's with replacement, up to
``final.ensemble_size`` rounds) runs no model again. ``auto`` ships the ensemble only when it
holds two or more models and scores strictly better on validation than the chosen seed; both
are picked on validation alone, and the test split is read only after the choice.

The ensemble is recorded in the final record (``ensemble``: members with their checkpoints,
MLflow runs and weights; its validation score, and its test score once taken) and written as
``<study.output_dir>/final/ensemble/ensemble.json``, which ``best`` then points at. Its members'
checkpoints are kept (locally and in MLflow) for as long as it is the study's choice.

The soup (:mod:`harness.train.soup`) is a greedy soup (Wortsman et al. 2022): the chosen
configuration's seed runs best first, each added to the weight average only if the average's
validation score does not drop (so it is never worse than its best seed, by construction); it
is written as a checkpoint, ``final/soup``, with its own validation logits, kept locally (the
MLflow runs hold its ingredients). Soups have the best chance when the seeds start from the same
weights and differ in data order only: ``final.vary=data_order``.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from optuna.trial import FrozenTrial, TrialState

from harness.base.files import replace_folder
from harness.records import schema, trials
from harness.records.final import FinalRecord
from harness.train.checkpoints import load_logits, save_logits
from harness.train.ensemble import ENSEMBLE_FILE, greedy_selection, log_loss, mixed, softmax
from harness.train.ensemble import write_ensemble as write_ensemble_file
from harness.train.scoring import checkpoint_probabilities, score_probabilities
from harness.train.soup import average_checkpoints

if TYPE_CHECKING:
    import numpy as np
    import optuna
    from datasets import Dataset

    from harness.metrics import MetricSuite

log = logging.getLogger(__name__)

ENSEMBLE_DIR = "ensemble"  # under the final stage's folder
SOUP_DIR = "soup"
# an ensemble's or a soup's record, part of the final record: JSON (records.final)
Combined = FinalRecord


@dataclass
class Candidate:
    name: str  # trial-N (a search trial) or final-N-seedK (a final-stage run)
    folder: Path
    run_id: str | None
    value: float  # its recorded validation value
    probabilities: np.ndarray  # validation, rows in the split's order


def candidates(
    study: optuna.Study, companion: optuna.Study, search_root: Path, final_root: Path
) -> list[Candidate]:
    """Every model the study still has a checkpoint with validation logits for: final-stage
    runs first, then search trials, each group best first."""
    found: list[Candidate] = []
    seen: set[str] = set()
    groups: tuple[tuple[optuna.Study, Path, str, Callable[[FrozenTrial], str]], ...] = (
        (
            companion,
            final_root / "checkpoints",
            "run",
            lambda t: "final-{}-seed{}".format(*trials.final_key(t)),
        ),
        (study, search_root / "checkpoints", "trial", lambda t: f"trial-{t.number}"),
    )
    sign = 1 if trials.direction(study) == "maximize" else -1
    for source, root, label, name in groups:
        complete = [
            t
            for t in source.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if source is not companion or schema.FINAL_TRIAL_ATTR in t.user_attrs
        ]
        for trial in sorted(complete, key=lambda t: (-sign * trials.study_value(t), t.number)):
            folder = root / f"{label}-{trial.number}"
            logits = load_logits(folder) if folder.is_dir() else None
            if logits is None or name(trial) in seen:  # a run completed twice: its first
                continue
            seen.add(name(trial))
            found.append(
                Candidate(
                    name(trial),
                    folder,
                    trial.user_attrs.get(schema.RUN_ID_ATTR),
                    trials.study_value(trial),
                    softmax(logits),
                )
            )
    return found


def scorer(metrics: MetricSuite, metric: str, labels: list[int]) -> Callable[[np.ndarray], float]:
    """The study metric of a probability table on the validation labels (the loss: log loss)."""

    def score(probabilities: np.ndarray) -> float:
        if metric == "loss":
            return log_loss(probabilities, labels)
        return metrics.compute(probabilities.argmax(axis=-1).tolist(), labels)[metric]

    return score


def select(
    size: int,
    found: list[Candidate],
    labels: list[int],
    metrics: MetricSuite,
    metric: str,
    maximize: bool,
    output_dir: Path,
) -> Combined | None:
    """The ensemble greedy selection makes of ``found`` (its record; None without candidates)."""
    if not found:
        return None
    by_name = {c.name: c for c in found}  # names are unique (candidates)
    score = scorer(metrics, metric, labels)
    selection = greedy_selection(
        {c.name: c.probabilities for c in found}, labels, score, size, maximize
    )
    members = [
        {
            "name": name,
            "weight": weight,
            "val": by_name[name].value,
            "checkpoint": str(by_name[name].folder.relative_to(output_dir)),
            "run_id": by_name[name].run_id,
        }
        for name, weight in selection.weights.items()
    ]
    return {
        "kind": "ensemble",
        "members": members,
        "val": selection.value,
        "val_loss": selection.loss,
        "size": size,
        "candidates": len(found),
    }


def greedy_soup(
    ingredients: list[Candidate],
    validation: Dataset,
    metrics: MetricSuite,
    metric: str,
    maximize: bool,
    output_dir: Path,
    final_root: Path,
) -> Combined | None:
    """The greedy soup of ``ingredients`` (the chosen configuration's seeds, best first),
    written to ``final/soup``; None (and no folder) when no second seed joins."""
    import numpy as np

    target = final_root / SOUP_DIR
    if len(ingredients) < 2:
        shutil.rmtree(target, ignore_errors=True)
        return None
    score = scorer(metrics, metric, list(validation["label"]))
    sign = 1.0 if maximize else -1.0
    kept = ingredients[:1]
    probabilities = ingredients[0].probabilities
    best = score(probabilities)
    scratch = final_root / f".{SOUP_DIR}-try"
    for candidate in ingredients[1:]:
        average_checkpoints([c.folder for c in [*kept, candidate]], scratch)
        mixed_probabilities = checkpoint_probabilities(scratch, validation)
        value = score(mixed_probabilities)
        if sign * value >= sign * best:  # greedy soup: in unless validation drops
            kept.append(candidate)
            best, probabilities = value, mixed_probabilities
    shutil.rmtree(scratch, ignore_errors=True)
    if len(kept) < 2:
        shutil.rmtree(target, ignore_errors=True)
        return None
    folder = average_checkpoints([c.folder for c in kept], final_root / f".{SOUP_DIR}-new")
    save_logits(np.log(np.clip(probabilities, 1e-12, 1.0)), folder)
    replace_folder(target, folder)
    return {
        "kind": "soup",
        "members": [c.name for c in kept],
        "val": best,
        "checkpoint": str(target.relative_to(output_dir)),
        "ingredients": len(ingredients),
    }


def decide(
    mode: str,
    seed_value: float,
    maximize: bool,
    ensemble: Combined | None,
    soup: Combined | None,
) -> str:
    """What ships: "seed", "soup" or "ensemble" (``final.combine``; ``auto``: the best
    validation value, ties to the simpler; an ensemble of one model is not an ensemble)."""
    if mode == "ensemble":
        return "ensemble" if ensemble else "seed"
    if mode == "soup":
        return "soup" if soup else "seed"
    if mode != "auto":
        return "seed"
    options = [("seed", seed_value)]
    if soup:
        options.append(("soup", soup["val"]))
    if ensemble and len(ensemble["members"]) > 1:
        options.append(("ensemble", ensemble["val"]))
    sign = 1.0 if maximize else -1.0
    return max(enumerate(options), key=lambda item: (sign * item[1][1], -item[0]))[1][0]


def _describe(weights: dict[str, float]) -> str:
    return ", ".join(f"{name} x{weight:.2f}" for name, weight in weights.items())


def describe(ensemble: Combined) -> str:
    """``final-3-seed1 x0.50, trial-7 x0.25, …``"""
    return _describe({m["name"]: m["weight"] for m in ensemble["members"]})


def test_score(
    shipped: Combined, output_dir: Path, split: Dataset, metrics: MetricSuite, metric: str
) -> Combined:
    """The ensemble's or the soup's test score (every metric; ``value``: the study metric's)."""
    if shipped["kind"] == "soup":
        probabilities = checkpoint_probabilities(output_dir / shipped["checkpoint"], split)
    else:
        tables = {
            m["name"]: checkpoint_probabilities(output_dir / m["checkpoint"], split)
            for m in shipped["members"]
        }
        probabilities = mixed(tables, {m["name"]: m["weight"] for m in shipped["members"]})
    scores = score_probabilities(probabilities, split, metrics)
    return {"value": scores[metric], "metrics": scores}


def write_folder(ensemble: Combined, output_dir: Path, final_root: Path) -> Path:
    """``final/ensemble/ensemble.json`` for the recorded ensemble, written whole."""
    target = final_root / ENSEMBLE_DIR
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = final_root / f".{ENSEMBLE_DIR}-new"
    shutil.rmtree(scratch, ignore_errors=True)
    write_ensemble_file(
        scratch,
        [(m["name"], output_dir / m["checkpoint"], m["weight"]) for m in ensemble["members"]],
    )
    # the relative paths are the same one level over: the scratch is a sibling of the target
    replace_folder(target, scratch)
    return target / ENSEMBLE_FILE


def member_folders(record: FinalRecord | None, output_dir: Path) -> set[Path]:
    """The checkpoint folders the recorded ensemble needs (empty without one)."""
    ensemble = (record or {}).get("ensemble") or {}
    return {(output_dir / m["checkpoint"]).resolve() for m in ensemble.get("members", [])}
