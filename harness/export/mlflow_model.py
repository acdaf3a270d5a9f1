"""An export as an MLflow model: a pyfunc (``MLmodel``, signature, input example, pip
requirements) that ``mlflow.pyfunc.load_model`` and ``mlflow models serve`` use, a label per text.

A pyfunc with its own loader (:mod:`harness.export.served_model`), not MLflow's
``transformers`` flavour: MLflow 3.17 supports transformers 4.45.2 to 5.17.0 (the harness runs
5.23), and the flavour logs a pipeline, which cannot load a prompt / prefix adapter kept
separate from its base model. The MLflow model holds the export folder, and for a separate
adapter its base model too, so it serves without the harness or the original base model.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

from harness.export import served_model
from harness.train.ensemble import is_ensemble, read_ensemble

INPUT_EXAMPLE = ["what a great day", "this is awful"]
REQUIREMENTS = ("mlflow", "torch", "transformers", "peft")


def save_mlflow_model(export: Path, target: Path, max_length: int) -> Path:
    """Write the MLflow model of the export folder ``export`` to ``target`` (a new folder)."""
    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema

    with tempfile.TemporaryDirectory(prefix="harness-mlflow-model-") as scratch:
        data = Path(scratch) / "classifier"
        shutil.copytree(export, data / served_model.MODEL)
        adapters = [
            folder
            for folder in _model_folders(export)
            if (folder / "adapter_config.json").is_file()
        ]
        if adapters:  # an ensemble's members share their base model: saved once
            _save_base(adapters[0], data / served_model.BASE)
        (data / served_model.SETTINGS).write_text(json.dumps({"max_length": max_length}))
        mlflow.pyfunc.save_model(
            str(target),
            loader_module=served_model.__name__.rsplit(".", 1)[-1],
            data_path=str(data),
            code_paths=[served_model.__file__],
            # texts in, label names out: a list, or a table of one column of any name
            signature=ModelSignature(
                inputs=Schema([ColSpec(DataType.string)]),
                outputs=Schema([ColSpec(DataType.string)]),
            ),
            input_example=INPUT_EXAMPLE,
            pip_requirements=[f"{name}=={version(name).split('+')[0]}" for name in REQUIREMENTS],
        )
    return target


def _model_folders(export: Path) -> list[Path]:
    """The export's model folders: itself, or an ensemble's members."""
    if not is_ensemble(export):
        return [export]
    return [folder for _, folder, _ in read_ensemble(export)]


def _save_base(export: Path, folder: Path) -> None:
    """A separate adapter's base model (with the export's labels), as transformers saves it."""
    from peft import PeftConfig
    from transformers import AutoConfig, AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(
        PeftConfig.from_pretrained(export).base_model_name_or_path,
        config=AutoConfig.from_pretrained(export),
    )
    base.save_pretrained(folder)
