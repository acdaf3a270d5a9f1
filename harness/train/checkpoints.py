"""A trial's checkpoint: saved (weights or adapter, tokenizer, label map), loaded back, and
stored by number in one folder. Which checkpoints a study keeps is the study's business
(:mod:`harness.study.retention`); this module knows no study.

Layout under ``study.output_dir``::

    checkpoints/trial-N/   a kept trial's checkpoint (weights or adapter, tokenizer, trial.json:
                           the trial, its value and params, and its MLflow run id, by which an
                           export matches the checkpoint to its trial)
    best -> checkpoints/trial-N   the best trial's (a symbolic link, replaced atomically); after
                           the final stage, the chosen configuration's best seed's, or what
                           ships instead: final/ensemble (ensemble.json) or final/soup
    .partial/trial-N/      a checkpoint being written; renamed into checkpoints/ when complete
    final/                 the final stage's runs, a store of their own (checkpoints/run-N, N
                           the companion study's trial number; the chosen one only, at the end)

A process killed while writing leaves only a ``.partial`` folder, which the next run removes.
Several workers may share the folder: each removes only what belongs to finished trials.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from harness.base import faults

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

VAL_LOGITS = "val_logits.npy"  # a checkpoint's validation logits (rows x labels, float32)


def save_logits(logits: npt.ArrayLike, folder: Path) -> None:
    """The validation logits of the evaluation a checkpoint holds (the split's row order)."""
    import numpy as np

    np.save(Path(folder) / VAL_LOGITS, np.asarray(logits, dtype=np.float32))


def load_logits(folder: str | Path) -> npt.NDArray[np.float32] | None:
    """A checkpoint's validation logits, or None where it has none (older ones)."""
    import numpy as np

    path = Path(folder) / VAL_LOGITS
    return np.load(path) if path.is_file() else None


def save_checkpoint(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    path: Path,
    logits: npt.ArrayLike | None = None,
) -> None:
    """Weights (or adapter: ``model`` a PreTrainedModel or a PeftModel), tokenizer and label
    map: what transformers / peft load back;
    ``logits``: the validation logits of the evaluation the weights scored.

    A peft checkpoint also keeps the model config (with the label names) beside the adapter.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    faults.hit("checkpoint")
    config = getattr(model, "get_base_model", lambda: model)().config
    config.save_pretrained(path)
    tokenizer.save_pretrained(path)
    labels = {"id2label": {int(k): v for k, v in config.id2label.items()}}
    (path / "labels.json").write_text(json.dumps(labels, indent=2) + "\n")
    if logits is not None:
        save_logits(logits, path)


def load_checkpoint(path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
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


class CheckpointStore:
    """Checkpoints by number in one folder: each written under ``.partial/``, committed into
    ``checkpoints/`` when complete, discarded or removed; ``best`` a link to one of them (or to
    any folder under the root). Which numbers stay is the caller's business (a study's:
    :mod:`harness.study.retention`)."""

    def __init__(self, root: str | Path, label: str = "trial") -> None:
        self.root = Path(root)
        self.label = label  # folder names: <label>-<number>
        self.kept_dir = self.root / "checkpoints"
        self.partial_dir = self.root / ".partial"
        self.best_link = self.root / "best"

    def partial(self, number: int) -> Path:
        """Where checkpoint ``number`` is written (emptied first)."""
        path = self.partial_dir / f"{self.label}-{number}"
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def commit(self, number: int, info: Mapping[str, object]) -> Path:
        """Move the finished checkpoint ``number`` in among the committed ones, with ``info``
        (any JSON: the trial, its value and params, its run id) as its ``trial.json``."""
        source = self.partial_dir / f"{self.label}-{number}"
        (source / "trial.json").write_text(json.dumps(info, indent=2) + "\n")
        target = self.path(number)
        self.kept_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        source.rename(target)
        return target

    def discard(self, number: int) -> None:
        """Remove checkpoint ``number``'s partial folder (a write that will not be committed)."""
        shutil.rmtree(self.partial_dir / f"{self.label}-{number}", ignore_errors=True)

    def remove(self, number: int) -> None:
        """Remove the committed checkpoint ``number``."""
        shutil.rmtree(self.path(number), ignore_errors=True)

    def path(self, number: int) -> Path:
        return self.kept_dir / f"{self.label}-{number}"

    def committed(self) -> list[int]:
        """The numbers of the committed checkpoints."""
        return self._numbers(self.kept_dir)

    def partials(self) -> list[int]:
        """The numbers of the partial folders (being written, or left by a killed process)."""
        return self._numbers(self.partial_dir)

    def number_of(self, folder: Path) -> int | None:
        """The number of a committed checkpoint's folder (None: not one of this store's)."""
        folder = Path(folder)
        return self._number(folder) if folder.parent == self.kept_dir else None

    def best_path(self) -> Path | None:
        return self.best_link if self.best_link.is_dir() else None

    def link_best(self, target: Path) -> None:
        """Point ``best`` at ``target`` (relative to the store's root)."""
        if self.best_link.is_symlink() and Path(os.readlink(self.best_link)) == target:
            return
        temporary = self.root / f".best-{os.getpid()}"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(target, target_is_directory=True)
        if self.best_link.is_dir() and not self.best_link.is_symlink():
            shutil.rmtree(self.best_link)  # a folder from an older layout
        os.replace(temporary, self.best_link)

    def _numbers(self, parent: Path) -> list[int]:
        if not parent.is_dir():
            return []
        found = (self._number(p) for p in parent.iterdir() if p.is_dir())
        return sorted(n for n in found if n is not None)

    def _number(self, folder: Path) -> int | None:
        prefix, _, number = folder.name.rpartition("-")
        return int(number) if prefix == self.label and number.isdigit() else None
