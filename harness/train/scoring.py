"""A saved checkpoint scored on a labelled split (the held-out test split, once the final stage
has chosen): the same metrics as validation, from the same tokenized rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.train.checkpoints import load_checkpoint
from harness.train.ensemble import log_loss

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def has_labels(split: Any) -> bool:
    """False for a split whose labels are unknown (a hub test split marks them -1)."""
    return len(split) > 0 and min(split["label"]) >= 0


def score_checkpoint(
    path: str | Path, split: Any, metrics: Any, batch_size: int = 64
) -> dict[str, float]:
    """``metrics`` (a MetricSuite) of the checkpoint at ``path`` on ``split`` (tokenized rows with
    a ``label`` column)."""
    return score_probabilities(checkpoint_probabilities(path, split, batch_size), split, metrics)


def score_probabilities(probabilities: Any, split: Any, metrics: Any) -> dict[str, float]:
    """``metrics`` of a table of label probabilities (rows of ``split``, in order), and
    ``loss``: their log loss (the Trainer's evaluation loss), so that a study whose metric is
    the loss is scored on test like any other."""
    labels = list(split["label"])
    scores = metrics.compute(probabilities.argmax(axis=-1).tolist(), labels)
    scores["loss"] = log_loss(probabilities, labels)
    return scores


def checkpoint_probabilities(path: str | Path, split: Any, batch_size: int = 64) -> Any:
    """The checkpoint's label probabilities on ``split`` (numpy, rows x labels, in order)."""
    import numpy as np
    import torch
    from transformers import DataCollatorWithPadding

    model, tokenizer = load_checkpoint(path)
    collate = DataCollatorWithPadding(tokenizer)
    columns = [c for c in MODEL_INPUTS if c in split.column_names]
    tables = []
    with torch.no_grad():
        for start in range(0, len(split), batch_size):
            rows = split[start : start + batch_size]
            batch = collate(
                [{c: rows[c][i] for c in columns} for i in range(len(rows["input_ids"]))]
            )
            tables.append(model(**batch).logits.float().softmax(-1).numpy())
    return np.concatenate(tables).astype(np.float64)
