"""A trial's checkpoint: saved (weights or adapter, tokenizer, label map), loaded back, and
kept within a bound for the whole study.

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
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from harness.base import faults
from harness.records import schema, trials

VAL_LOGITS = "val_logits.npy"  # a checkpoint's validation logits (rows x labels, float32)


def save_logits(logits: Any, folder: Path) -> None:
    """The validation logits of the evaluation a checkpoint holds (the split's row order)."""
    import numpy as np

    np.save(Path(folder) / VAL_LOGITS, np.asarray(logits, dtype=np.float32))


def load_logits(folder: str | Path) -> Any:
    """A checkpoint's validation logits (numpy), or None where it has none (older ones)."""
    import numpy as np

    path = Path(folder) / VAL_LOGITS
    return np.load(path) if path.is_file() else None


def save_checkpoint(model: Any, tokenizer: Any, path: Path, logits: Any = None) -> None:
    """Weights (or adapter), tokenizer and label map: what transformers / peft load back;
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


class CheckpointStore:
    """The study's local checkpoints, bounded: the best ``keep`` trials' (and always the
    best's)."""

    @classmethod
    def from_config(cls, cfg: Any) -> CheckpointStore:
        """The store of the study ``cfg`` describes (``study.output_dir``, ``checkpoints``)."""
        return cls(str(cfg.study.output_dir), cfg.checkpoints.keep)

    def __init__(self, root: str | Path, keep: int | None, label: str = "trial") -> None:
        self.root = Path(root)
        self.keep = keep  # None: keep every completed trial's checkpoint
        self.label = label  # folder names: <label>-<number>
        self.kept_dir = self.root / "checkpoints"
        self.partial_dir = self.root / ".partial"
        self.best_link = self.root / "best"

    def partial(self, number: int) -> Path:
        """Where trial ``number`` writes its checkpoint (emptied first)."""
        path = self.partial_dir / f"{self.label}-{number}"
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def commit(self, number: int, info: dict[str, Any]) -> Path:
        """Move trial ``number``'s finished checkpoint in among the kept ones."""
        source = self.partial_dir / f"{self.label}-{number}"
        (source / "trial.json").write_text(json.dumps(info, indent=2) + "\n")
        target = self.path(number)
        self.kept_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        source.rename(target)
        return target

    def discard(self, number: int) -> None:
        shutil.rmtree(self.partial_dir / f"{self.label}-{number}", ignore_errors=True)

    def path(self, number: int) -> Path:
        return self.kept_dir / f"{self.label}-{number}"

    def wanted(self, study: Any, value: float, method: str | None = None) -> bool:
        """Would a trial scoring ``value`` (with ``method``, in a methods study) be among the
        kept ones? A checkpoint that would be removed at once is not written at all."""
        if self.keep is None:
            return True
        sign = 1 if trials.direction(study) == "maximize" else -1
        ranking = trials.ranked(study)
        if len(ranking) < self.keep or sign * value > sign * trials.study_value(
            ranking[self.keep - 1]
        ):
            return True
        if method is None:
            return False
        best = trials.best_per_method(study).get(method)
        return best is None or sign * value > sign * trials.study_value(best)

    def kept(self, study: Any) -> set[int]:
        """Trial numbers whose checkpoints stay: the best ``keep``, the best overall, and the
        best of each method in a methods study."""
        ranking = trials.ranked(study)
        numbers = {t.number for t in (ranking if self.keep is None else ranking[: self.keep])}
        best = trials.best_trial(study)
        if best is not None:
            numbers.add(best.number)
        numbers.update(t.number for t in trials.best_per_method(study).values())
        final = study.user_attrs.get(schema.FINAL_ATTR) or {}
        for member in (final.get("ensemble") or {}).get("members", []):  # the shipped ensemble's
            folder = self.root / member["checkpoint"]
            if folder.parent == self.kept_dir and self._number(folder) is not None:
                numbers.add(self._number(folder))
        return numbers

    def remove_unkept(self, study: Any) -> list[int]:
        """Remove the checkpoints of finished trials that are not kept; point ``best`` at the
        best trial's. Returns the trial numbers whose checkpoints were removed."""

        keep = self.kept(study)
        finished = {
            t.number
            for t in study.get_trials(deepcopy=False)
            if t.state not in (TrialState.RUNNING, TrialState.WAITING)
        }
        removed = []
        for folder in self._folders(self.kept_dir):
            number = self._number(folder)
            if number in finished and number not in keep:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(number)
        for folder in self._folders(self.partial_dir):  # left by a killed process
            if self._number(folder) in finished:
                shutil.rmtree(folder, ignore_errors=True)
        final = study.user_attrs.get(schema.FINAL_ATTR) or {}
        shipped = (
            (final.get("ensemble") or {}).get("folder")
            or (final.get("soup") or {}).get("checkpoint")
            or final.get("checkpoint", "-")
        )
        chosen = self.root / str(shipped)
        best = trials.best_trial(study)
        if chosen.is_dir():  # the final stage's choice stands (until it chooses again)
            self.link_best(chosen.relative_to(self.root))
        elif best is not None and self.path(best.number).is_dir():
            self.link_best(self.path(best.number).relative_to(self.root))
        return sorted(removed)

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

    def _folders(self, parent: Path) -> list[Path]:
        if not parent.is_dir():
            return []
        return [p for p in parent.iterdir() if p.is_dir() and self._number(p) is not None]

    def _number(self, folder: Path) -> int | None:
        prefix, _, number = folder.name.rpartition("-")
        return int(number) if prefix == self.label and number.isdigit() else None
