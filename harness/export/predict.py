"""Labels and probabilities from a trained classifier (an export, or any harness checkpoint).

Own code rather than ``transformers.pipeline("text-classification")``: the pipeline cannot load a
prompt / prefix adapter kept separate from its base model, and the harness exports those.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.train.ensemble import probabilities as label_probabilities


@dataclass
class Prediction:
    text: str
    label: str
    probability: float
    top: list[tuple[str, float]]  # the k most probable labels, most probable first


def predict(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    max_length: int = 128,
    batch_size: int = 32,
    top_k: int = 1,
) -> list[Prediction]:
    """Softmax over the labels for each text (batched, no gradients); for an ensemble
    (:class:`harness.train.ensemble.EnsembleModel`) its members' weighted mean."""
    import torch

    names = model.config.id2label
    out: list[Prediction] = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            encoded = tokenizer(
                batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            probabilities = label_probabilities(model, encoded)
            values, indices = probabilities.topk(min(top_k, probabilities.shape[-1]), dim=-1)
            for text, row_values, row_indices in zip(
                batch, values.tolist(), indices.tolist(), strict=True
            ):
                top = [
                    (str(names.get(i, i)), p) for p, i in zip(row_values, row_indices, strict=True)
                ]
                out.append(Prediction(text, top[0][0], top[0][1], top))
    return out


def accuracy_on(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    labels: list[int],
    max_length: int = 128,
    batch_size: int = 64,
) -> float:
    """Accuracy of ``model`` on labelled texts (batched by length, no gradients)."""
    import torch

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    correct = 0
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            predicted = label_probabilities(model, batch).argmax(-1).tolist()
            correct += sum(p == labels[i] for p, i in zip(predicted, idx, strict=True))
    return correct / len(texts)
