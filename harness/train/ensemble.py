"""Models combined into one: greedy ensemble selection over validation predictions (Caruana et
al. 2004, as auto-sklearn and AutoGluon use it), and the ensemble folder that predict, export
and the MLflow model load.

Selection works on the validation logits each checkpoint keeps (``val_logits.npy``, recorded at
the evaluation its weights scored), so it runs no model again. Starting from an empty ensemble,
each round adds the model (with replacement: a model may be added again, which raises its
weight) whose addition gives the best validation score of the weighted mean of probabilities;
ties go to the lower validation loss, then to the earlier model. After ``size`` rounds the
ensemble is the best prefix seen, so it is never worse on validation than its best single
member (the first round picks that one).

An ensemble folder::

    ensemble.json   {"members": [{"folder": "...", "weight": w, "name": "..."}, ...]}
                    folders relative to ensemble.json's own folder; weights sum to 1

Each member folder is a harness checkpoint or an export (a model that
:func:`harness.train.checkpoints.load_checkpoint` loads); all share one tokenizer (one study:
one base model).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.train.checkpoints import load_checkpoint

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

ENSEMBLE_FILE = "ensemble.json"

Score = Callable[["np.ndarray"], float]  # probabilities (rows x labels) -> the study metric


def softmax(logits: npt.ArrayLike) -> npt.NDArray[np.float64]:
    import numpy as np

    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    out: npt.NDArray[np.float64] = exp / exp.sum(axis=-1, keepdims=True)
    return out


def log_loss(probabilities: np.ndarray, labels: Sequence[int]) -> float:
    """Mean negative log-likelihood of the true labels."""
    import numpy as np

    picked = np.asarray(probabilities)[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.log(np.clip(picked, 1e-12, 1.0)).mean())


@dataclass
class Selection:
    weights: dict[str, float]  # member name -> weight (summing to 1), in selection order
    value: float  # the ensemble's validation score
    loss: float  # its validation log loss
    history: list[float]  # the score after each round


def greedy_selection(
    probabilities: Mapping[str, np.ndarray],
    labels: Sequence[int],
    score: Score,
    size: int,
    maximize: bool = True,
) -> Selection:
    """Caruana's ensemble selection with replacement over models' validation probabilities.

    ``probabilities``: name -> (rows x labels), rows in the validation split's order;
    ``score``: the study metric of a probability table; ``size``: rounds (the most members
    an ensemble can hold, counting repeats).
    """
    import numpy as np

    if not probabilities:
        raise ValueError("ensemble selection needs at least one model")
    if size < 1:
        raise ValueError(f"ensemble size must be at least 1, got {size}")
    names = list(probabilities)
    tables = {n: np.asarray(probabilities[n], dtype=np.float64) for n in names}
    sign = 1.0 if maximize else -1.0
    total = np.zeros_like(tables[names[0]])
    counts: dict[str, int] = {}
    best: tuple[tuple[float, float], dict[str, int]] | None = None
    history = []
    for round_ in range(1, size + 1):
        candidates = []
        for index, name in enumerate(names):
            mixed = (total + tables[name]) / round_
            candidates.append(((sign * score(mixed), -log_loss(mixed, labels)), -index, name))
        key, _, name = max(candidates)
        total = total + tables[name]
        counts[name] = counts.get(name, 0) + 1
        history.append(sign * key[0])
        if best is None or key > best[0]:
            best = (key, dict(counts))
    assert best is not None
    (value, negative_loss), chosen = best
    rounds = sum(chosen.values())
    return Selection(
        {n: c / rounds for n, c in chosen.items()}, sign * value, -negative_loss, history
    )


def mixed(probabilities: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """The weighted mean of the members' probabilities."""
    return sum(weights[n] * probabilities[n] for n in weights)  # type: ignore[return-value]


# ---------------------------------------------------------------------- the ensemble folder


def write_ensemble(folder: Path, members: Sequence[tuple[str, Path, float]]) -> Path:
    """``ensemble.json`` in ``folder`` for members (name, model folder, weight); model folders
    are written relative to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = [
        {"name": name, "folder": os.path.relpath(path, folder), "weight": weight}
        for name, path, weight in members
    ]
    total = sum(weight for _, _, weight in members)
    if not entries or not math.isclose(total, 1.0, rel_tol=1e-6):
        raise ValueError(f"an ensemble's weights must sum to 1, got {total}")
    path = folder / ENSEMBLE_FILE
    path.write_text(json.dumps({"members": entries}, indent=2) + "\n")
    return path


def is_ensemble(folder: str | Path) -> bool:
    return (Path(folder) / ENSEMBLE_FILE).is_file()


def read_ensemble(folder: str | Path) -> list[tuple[str, Path, float]]:
    """The members of the ensemble in ``folder``: (name, model folder, weight)."""
    folder = Path(folder)
    entries = json.loads((folder / ENSEMBLE_FILE).read_text())["members"]
    return [(str(e["name"]), (folder / e["folder"]).resolve(), float(e["weight"])) for e in entries]


class EnsembleModel:
    """Members loaded from an ensemble folder; :meth:`probabilities` is their weighted mean.
    ``config`` is the first member's (labels, pad token): a study's members share them."""

    def __init__(self, folder: str | Path) -> None:
        self.members: list[tuple[PreTrainedModel, float]] = []
        self.tokenizer = None
        for _, path, weight in read_ensemble(folder):
            model, tokenizer = load_checkpoint(path)
            self.members.append((model, weight))
            self.tokenizer = self.tokenizer or tokenizer
        self.config = self.members[0][0].config

    def probabilities(self, **encoded: torch.Tensor) -> torch.Tensor:
        return sum(
            weight * model(**encoded).logits.float().softmax(-1) for model, weight in self.members
        )


def load_classifier(
    folder: str | Path,
) -> tuple[PreTrainedModel | EnsembleModel, PreTrainedTokenizerBase]:
    """``(model, tokenizer)`` of a checkpoint, an export, or an ensemble folder."""
    if is_ensemble(folder):
        model = EnsembleModel(folder)
        return model, model.tokenizer
    return load_checkpoint(folder)


def probabilities(
    model: PreTrainedModel | EnsembleModel, encoded: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """Label probabilities of a batch from a model or an :class:`EnsembleModel`."""
    if isinstance(model, EnsembleModel):
        return model.probabilities(**encoded)
    return model(**encoded).logits.float().softmax(-1)
