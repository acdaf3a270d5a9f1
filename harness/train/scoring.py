"""Batched inference, written once: :func:`predict_probabilities`, a model's (or an ensemble's)
label probabilities on texts or on a tokenized split. What uses it: the final stage's test
scoring (:func:`score_checkpoint`, the same metrics as validation, from the same tokenized
rows), ``harness predict`` and the export checks (:mod:`harness.export.predict`), and the
benchmark scripts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.train.checkpoints import load_checkpoint
from harness.train.ensemble import log_loss
from harness.train.ensemble import probabilities as batch_probabilities

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from datasets import Dataset
    from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

    from harness.metrics import MetricSuite
    from harness.train.ensemble import EnsembleModel

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def predict_probabilities(
    model: PreTrainedModel | EnsembleModel,
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[str] | Dataset,
    batch_size: int = 64,
    max_length: int = 128,
    by_length: bool = False,
) -> npt.NDArray[np.float32]:
    """Label probabilities (rows x labels, float32, in the order of ``rows``), in batches of
    ``batch_size`` with no gradients; for an ensemble its members' weighted mean.

    ``rows``: texts (tokenized here, truncated at ``max_length``), or a tokenized split (its
    model inputs, as the Trainer evaluated them). Each batch is padded to its longest row;
    ``by_length``: batches of rows of similar length (texts sorted by length: less padding).
    """
    import numpy as np
    import torch

    encode, lengths = _encoder(tokenizer, rows, max_length)
    if not lengths:
        return np.zeros((0, len(model.config.id2label)), dtype=np.float32)
    order = list(range(len(lengths)))
    if by_length:
        order.sort(key=lambda i: lengths[i])
    tables = []
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = encode(order[start : start + batch_size])
            tables.append(batch_probabilities(model, batch).numpy())
    probabilities: npt.NDArray[np.float32] = np.concatenate(tables)
    if by_length:  # back in the order of ``rows``
        probabilities[order] = probabilities.copy()
    return probabilities


def _encoder(
    tokenizer: PreTrainedTokenizerBase, rows: Sequence[str] | Dataset, max_length: int
) -> tuple[Callable[[list[int]], BatchEncoding], list[int]]:
    """How a batch of rows (their indices) is encoded, and each row's length."""
    from datasets import Dataset
    from transformers import DataCollatorWithPadding

    if isinstance(rows, Dataset):  # a tokenized split: its model inputs, padded
        split = rows
        collate = DataCollatorWithPadding(tokenizer)
        columns = [c for c in MODEL_INPUTS if c in split.column_names]

        def collated(index: list[int]) -> BatchEncoding:
            picked = split[index]
            return collate([{c: picked[c][i] for c in columns} for i in range(len(index))])

        return collated, [len(ids) for ids in split["input_ids"]]
    texts = list(rows)

    def tokenized(index: list[int]) -> BatchEncoding:
        return tokenizer(
            [texts[i] for i in index],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )

    return tokenized, [len(text) for text in texts]


def has_labels(split: Dataset) -> bool:
    """False for a split whose labels are unknown (a hub test split marks them -1)."""
    return len(split) > 0 and min(split["label"]) >= 0


def score_checkpoint(
    path: str | Path, split: Dataset, metrics: MetricSuite, batch_size: int = 64
) -> dict[str, float]:
    """``metrics`` of the checkpoint at ``path`` on ``split`` (tokenized rows with a ``label``
    column)."""
    return score_probabilities(checkpoint_probabilities(path, split, batch_size), split, metrics)


def score_probabilities(
    probabilities: npt.NDArray[np.float64], split: Dataset, metrics: MetricSuite
) -> dict[str, float]:
    """``metrics`` of a table of label probabilities (rows of ``split``, in order), and
    ``loss``: their log loss (the Trainer's evaluation loss), so that a study whose metric is
    the loss is scored on test like any other."""
    labels = list(split["label"])
    scores = metrics.compute(probabilities.argmax(axis=-1).tolist(), labels)
    scores["loss"] = log_loss(probabilities, labels)
    return scores


def checkpoint_probabilities(
    path: str | Path, split: Dataset, batch_size: int = 64
) -> npt.NDArray[np.float64]:
    """The checkpoint's label probabilities on ``split`` (rows x labels, in order)."""
    model, tokenizer = load_checkpoint(path)
    return predict_probabilities(model, tokenizer, split, batch_size).astype("float64")
