"""Load a trial's checkpoint back (full weights or a peft adapter, tokenizer, label map)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_checkpoint(path: str | Path) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a checkpoint folder the harness wrote.

    A peft checkpoint is applied to the base model it was trained from
    (``adapter_config.json`` names it); a full fine-tune loads directly.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if (path / "adapter_config.json").is_file():
        from peft import PeftConfig, PeftModel

        base = AutoModelForSequenceClassification.from_pretrained(
            PeftConfig.from_pretrained(path).base_model_name_or_path,
            config=AutoConfig.from_pretrained(path),
        )
        model = PeftModel.from_pretrained(base, path)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(path)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


def accuracy_on(model: Any, tokenizer: Any, texts: list[str], labels: list[int],
                max_length: int = 128, batch_size: int = 64) -> float:
    """Accuracy of ``model`` on labelled texts (batched by length, no gradients)."""
    import torch

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    correct = 0
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")
            predicted = model(**batch).logits.argmax(-1).tolist()
            correct += sum(p == labels[i] for p, i in zip(predicted, idx, strict=True))
    return correct / len(texts)
