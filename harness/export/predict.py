"""Labels and probabilities from a trained classifier (an export, or any harness checkpoint).

Own code rather than ``transformers.pipeline("text-classification")``: the pipeline cannot load a
prompt / prefix adapter kept separate from its base model, and the harness exports those.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.train.scoring import predict_probabilities

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from harness.train.ensemble import EnsembleModel


@dataclass
class Prediction:
    text: str
    label: str
    probability: float
    top: list[tuple[str, float]]  # the k most probable labels, most probable first


def predict(
    model: PreTrainedModel | EnsembleModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int = 128,
    batch_size: int = 32,
    top_k: int = 1,
) -> list[Prediction]:
    """Softmax over the labels for each text (batched, no gradients); for an ensemble
    (:class:`harness.train.ensemble.EnsembleModel`) its members' weighted mean."""
    import torch

    names = model.config.id2label
    texts = list(texts)
    probabilities = torch.from_numpy(
        predict_probabilities(model, tokenizer, texts, batch_size, max_length)
    )
    values, indices = probabilities.topk(min(top_k, probabilities.shape[-1]), dim=-1)
    out: list[Prediction] = []
    for text, row_values, row_indices in zip(texts, values.tolist(), indices.tolist(), strict=True):
        top = [(str(names.get(i, i)), p) for p, i in zip(row_values, row_indices, strict=True)]
        out.append(Prediction(text, top[0][0], top[0][1], top))
    return out


def accuracy_on(
    model: PreTrainedModel | EnsembleModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    labels: Sequence[int],
    max_length: int = 128,
    batch_size: int = 64,
) -> float:
    """Accuracy of ``model`` on labelled texts (batched by length, no gradients)."""
    probabilities = predict_probabilities(
        model, tokenizer, texts, batch_size, max_length, by_length=True
    )
    predicted: list[int] = probabilities.argmax(-1).tolist()
    return sum(p == label for p, label in zip(predicted, labels, strict=True)) / len(texts)
