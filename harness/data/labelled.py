"""Turn a source's raw splits into labelled train / validation (/ test) data, once per study.

Output columns: ``text`` (str) and ``label`` (a ``ClassLabel`` whose names are the label names,
in id order). Label names are derived from the data and logged, never guessed silently.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.base.errors import ConfigError
from harness.data.labels import label_mapping, unlabelled, where_is

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict
    from omegaconf import DictConfig
    from transformers import BatchEncoding, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

VALIDATION_ALIASES = ("validation", "valid", "val", "dev")


@dataclass
class LabelledData:
    """Prepared splits and their label names (``label_names[i]`` is the name of id ``i``)."""

    splits: DatasetDict  # train, validation and optionally test
    label_names: list[str]
    # rows per split before data.max_train_samples / data.max_eval_samples cut them (a split
    # that was not cut has its own size here)
    available: dict[str, int] = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def sizes(self) -> dict[str, int]:
        return {name: len(split) for name, split in self.splits.items()}

    def describe_sizes(self) -> str:
        """The splits' rows, a cut one with what it was cut from and by which setting:
        "train 1,500 of 4,000 rows (data.max_train_samples), validation 630"."""
        parts = []
        for name, rows in self.sizes().items():
            whole = self.available.get(name, rows)
            parts.append(
                f"{name} {rows:,} of {whole:,} rows ({cap_field(name)})"
                if whole > rows
                else f"{name} {rows:,}"
            )
        return ", ".join(parts)


def label_and_split(raw: DatasetDict, data_cfg: DictConfig) -> LabelledData:
    """Check columns, map labels to ids, carve a validation split if needed, apply caps."""
    from datasets import DatasetDict

    text_col, label_col = data_cfg.text_column, data_cfg.label_column
    splits = {name: raw[name] for name in raw}
    if "train" not in splits:
        raise ConfigError("data", f"the data has no 'train' split (splits: {', '.join(splits)})")
    for alias in VALIDATION_ALIASES[1:]:
        if alias in splits and "validation" not in splits:
            splits["validation"] = splits.pop(alias)
    splits = {k: v for k, v in splits.items() if k in ("train", "validation", "test")}

    for name, split in splits.items():
        where = where_is(data_cfg, name)
        if len(split) == 0:
            raise ConfigError(where, f"the {name} split is empty")
        for setting, column in (("data.text_column", text_col), ("data.label_column", label_col)):
            if column not in split.column_names:
                raise ConfigError(
                    setting,
                    f"column '{column}' is not in {where} "
                    f"(columns: {', '.join(split.column_names)})",
                )
        _check_texts(split[text_col], name, where)

    label_text_col = data_cfg.get("label_text_column")
    names, to_id = label_mapping(splits, data_cfg, label_text_col)
    prepared = {}
    for name, split in splits.items():
        ids = [-1 if unlabelled(value, name) else to_id(value, name) for value in split[label_col]]
        prepared[name] = _to_text_label(split, text_col, ids, names)
    _check_labelled(prepared, names, data_cfg)

    if "validation" not in prepared:
        prepared["train"], prepared["validation"] = _carve_validation(
            prepared["train"], data_cfg.validation_size, data_cfg.split_seed
        )
    available = {name: len(split) for name, split in prepared.items()}
    prepared = {
        name: _cap(
            split,
            data_cfg.max_train_samples if name == "train" else data_cfg.max_eval_samples,
            data_cfg.split_seed,
            name,
        )
        for name, split in prepared.items()
    }
    data = LabelledData(DatasetDict(prepared), names, available)
    log.info(
        "data '%s': %s; labels: %s",
        data_cfg.name,
        data.describe_sizes(),
        ", ".join(f"{i}={n}" for i, n in enumerate(names)),
    )
    return data


def tokenize(
    data: LabelledData, tokenizer: PreTrainedTokenizerBase, max_length: int
) -> DatasetDict:
    """Tokenize every split once (truncation only: padding is dynamic, per batch)."""
    if not isinstance(max_length, int) or max_length <= 0:
        raise ConfigError("data.max_length", f"must be a positive integer, got {max_length!r}")

    def encode(batch: dict[str, list[str]]) -> BatchEncoding:
        # `length` feeds train.train_sampling_strategy=group_by_length (the Trainer drops it
        # before the model sees a batch).
        return tokenizer(batch["text"], truncation=True, max_length=max_length, return_length=True)

    from datasets import DatasetDict

    encoded = DatasetDict(
        {
            name: split.map(
                encode,
                batched=True,
                remove_columns=["text"],
                new_fingerprint=_tokenized_fingerprint(split, tokenizer, max_length),
            )
            for name, split in data.splits.items()
        }
    )
    # Evaluation order does not change a metric; sorted by length, each batch pads to almost
    # nothing (evaluation of tweets ran ~1.6x faster on a 2-core CPU).
    for name in encoded:
        if name != "train":
            encoded[name] = encoded[name].sort("length")
    return encoded


# bumped whenever tokenize's encode changes what it writes (the cache of the tokenized splits)
_ENCODE_VERSION = "encode-1: truncation, length"


def _tokenized_fingerprint(
    split: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int
) -> str | None:
    """The tokenized split's fingerprint (the key of its ``datasets`` cache): the split's own,
    the tokenizer's whole definition (a fast tokenizer's JSON: vocabulary, normalizer, special
    tokens), ``max_length`` and the encoding's version. Left to ``datasets`` it hashes the
    encode function with the tokenizer in it through dill, which took 2 s a study for MiniLM's
    tokenizer. None (a slow tokenizer, without that JSON): ``datasets`` hashes it itself."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    digest = hashlib.sha256()
    parts = (_ENCODE_VERSION, split._fingerprint, type(tokenizer).__name__, str(max_length))
    for part in (*parts, backend.to_str()):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def _check_texts(texts: Sequence[object], split: str, where: str) -> None:
    for row, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            bad = sum(1 for t in texts if not isinstance(t, str) or not t.strip())
            raise ConfigError(
                "data.text_column",
                f"{bad} row(s) of {where} have no text (first: row {row}, value {text!r})",
            )


def _check_labelled(prepared: dict[str, Dataset], names: list[str], data_cfg: DictConfig) -> None:
    """Two classes or more in train, labels on every validation row; a test split without
    labels (-1) is kept, and not scored (the final stage says it is unlabelled)."""
    present = sorted(set(prepared["train"]["label"]))
    if len(present) < 2:
        raise ConfigError(
            "data.label_column",
            f"classification needs at least 2 labels: "
            f"{where_is(data_cfg, 'train')} has only "
            f"{', '.join(repr(names[i]) for i in present)} (of {names})",
        )
    validation = prepared.get("validation")
    missing = sum(1 for i in validation["label"] if i < 0) if validation is not None else 0
    if missing and validation is not None:
        where = where_is(data_cfg, "validation")
        raise ConfigError(
            "data.validation_file" if data_cfg.get("validation_file") else "data.label_column",
            f"{where} is unlabelled ({missing} of {len(validation)} rows have "
            "label -1): trials are validated on labelled rows; give a labelled "
            "validation file, or none (data.validation_file=null carves one "
            "from train)",
        )
    test = prepared.get("test")
    if test is not None and min(test["label"]) < 0:
        log.info("the test split is unlabelled (label -1): it is not scored")


def _to_text_label(split: Dataset, text_col: str, ids: list[int], names: list[str]) -> Dataset:
    from datasets import ClassLabel, Dataset, Features, Value

    if len(names) < 2:
        raise ConfigError("data.label_column", f"classification needs at least 2 labels: {names}")
    features = Features(text=Value("string"), label=ClassLabel(names=names))
    return Dataset.from_dict({"text": split[text_col], "label": ids}, features=features)


def _carve_validation(train: Dataset, size: float, seed: int) -> tuple[Dataset, Dataset]:
    if not 0 < size < 1:
        raise ConfigError("data.validation_size", f"must be in (0, 1), got {size}")
    held = math.ceil(size * len(train))  # as datasets' train_test_split counts it
    if held < 1 or len(train) - held < 1:
        raise ConfigError(
            "data.validation_size",
            f"{size} of {len(train)} training rows leaves "
            f"{len(train) - held} to train on and {held} "
            "to validate on: give a validation file, or "
            "more rows",
        )
    try:
        parts = train.train_test_split(test_size=size, stratify_by_column="label", seed=seed)
    except ValueError as exc:  # a class too small to stratify
        log.warning("validation split not stratified (%s)", exc)
        parts = train.train_test_split(test_size=size, seed=seed)
    log.info("no validation split: carved %d examples from train (stratified)", len(parts["test"]))
    return parts["train"], parts["test"]


def cap_field(split: str) -> str:
    """The setting that caps ``split``'s rows."""
    return "data.max_train_samples" if split == "train" else "data.max_eval_samples"


def _cap(split: Dataset, limit: int | None, seed: int, name: str) -> Dataset:
    """The first ``limit`` rows of ``split`` shuffled with ``seed`` (null: every row)."""
    if limit is None:
        return split
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise ConfigError(cap_field(name), f"must be a positive integer or null, got {limit!r}")
    if limit >= len(split):
        return split
    return split.shuffle(seed=seed).select(range(limit))
