"""The registered MLflow model's loader: an export loaded with transformers (+ peft), a label
per text.

An MLflow pyfunc ``loader_module``: ``export.register=true`` copies this file into the MLflow
model (its ``code/``), and MLflow imports it from there to load the model
(``mlflow.pyfunc.load_model``, ``mlflow models serve``). It imports no harness module, so the
model serves wherever torch, transformers and peft are installed. A separate adapter (prompt or
prefix tuning, or a LoRA kept unmerged) is applied to the base model the MLflow model carries
beside it. An ensemble export (``ensemble.json`` and a folder per member) loads every member
and answers the label of their weighted mean probability.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

MODEL = "model"  # the export folder
BASE = "base"  # a separate adapter's base model
SETTINGS = "serving.json"  # {"max_length": tokens per text, "batch_size": texts per batch}
ENSEMBLE = "ensemble.json"  # an ensemble export: {"members": [{"folder", "weight"}, ...]}


class TextClassifier:
    """The classifier in an MLflow model's data folder; ``predict`` answers label names."""

    def __init__(self, folder: Path) -> None:
        from transformers import AutoTokenizer

        settings = json.loads((folder / SETTINGS).read_text())
        self.max_length = int(settings["max_length"])
        self.batch_size = int(settings.get("batch_size", 32))
        export = folder / MODEL
        if (export / ENSEMBLE).is_file():
            entries = json.loads((export / ENSEMBLE).read_text())["members"]
            members = [(export / e["folder"], float(e["weight"])) for e in entries]
        else:
            members = [(export, 1.0)]
        self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(members[0][0])
        self.members = [
            (_load(path, folder / BASE, self.tokenizer), weight) for path, weight in members
        ]
        self.model = self.members[0][0]
        self.names = {int(k): str(v) for k, v in self.model.config.id2label.items()}

    def get_raw_model(self) -> PreTrainedModel | PeftModel:
        """The transformers (or peft) model (``PyFuncModel.get_raw_model()``); an ensemble's
        first member."""
        return self.model

    def probabilities(self, texts: list[str]) -> torch.Tensor:
        """Label probabilities of each text (a tensor, texts x labels): the members' weighted
        mean."""
        import torch

        tables: list[torch.Tensor] = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                encoded = self.tokenizer(
                    texts[start : start + self.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                tables.append(
                    sum(
                        weight * model(**encoded).logits.float().softmax(-1)
                        for model, weight in self.members
                    )
                )
        return torch.cat(tables)

    # Any: MLflow hands over what its caller sent (texts, a DataFrame or a Series)
    def predict(self, model_input: Any, params: dict[str, object] | None = None) -> list[str]:
        """The most probable label of each text (a list of texts, or a one-column table)."""
        texts = _texts(model_input)
        if not texts:
            return []
        return [self.names[i] for i in self.probabilities(texts).argmax(-1).tolist()]


def _load(
    export: Path, base_folder: Path, tokenizer: PreTrainedTokenizerBase
) -> PreTrainedModel | PeftModel:
    """One model of an export: weights, or a separate adapter on the base model beside it."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    if (export / "adapter_config.json").is_file():
        from peft import PeftModel

        base = AutoModelForSequenceClassification.from_pretrained(
            base_folder, config=AutoConfig.from_pretrained(export)
        )
        model = PeftModel.from_pretrained(base, export)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(export)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def _texts(model_input: Any) -> list[str]:  # Any: as predict's
    if isinstance(model_input, str):
        return [model_input]
    if hasattr(model_input, "iloc"):  # pandas: a one-column DataFrame, or a Series
        column = model_input.iloc[:, 0] if model_input.ndim == 2 else model_input
        return [str(text) for text in column.tolist()]
    return [str(text) for text in model_input]


def _load_pyfunc(data_path: str) -> TextClassifier:
    """MLflow's entry point: the model in ``data_path`` (the MLflow model's data folder)."""
    return TextClassifier(Path(data_path))
