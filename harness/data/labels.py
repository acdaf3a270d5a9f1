"""Class labels of a labelled data set: the names in id order and the id of every raw label,
checked across splits (one kind of label everywhere, nothing the train split lacks)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from harness.base.errors import ConfigError

if TYPE_CHECKING:
    from datasets import Dataset
    from omegaconf import DictConfig

log = logging.getLogger(__name__)

# A raw label value (text, an integer id) -> its class id; the split it is in
ToId = Callable[[object, str], int]


def where_is(data_cfg: DictConfig, split: str) -> str:
    file = data_cfg.get(f"{split}_file") if split in ("train", "validation", "test") else None
    return f"'{file}'" if file else f"the {split} split"


def unlabelled(value: object, split: str) -> bool:
    """A row of a validation or test split without a label: a negative integer (hub test
    splits mark theirs -1). Never a class: the row keeps -1, and the split counts as unlabelled
    (:func:`harness.train.scoring.has_labels`)."""
    return split != "train" and isinstance(value, int) and not isinstance(value, bool) and value < 0


def label_mapping(
    splits: dict[str, Dataset], data_cfg: DictConfig, label_text_col: str | None
) -> tuple[list[str], ToId]:
    """Label names in id order, and a function that maps a raw label value to its id (the
    rows :func:`unlabelled` excepted: they keep -1)."""
    from datasets import ClassLabel

    label_col = data_cfg.label_column
    given = _given_names(data_cfg.get("label_names"))
    feature = splits["train"].features[label_col]
    values = {
        v for name, split in splits.items() for v in split[label_col] if not unlabelled(v, name)
    }
    if None in values:
        raise ConfigError("data.label_column", f"column '{label_col}' has rows with no label")
    _check_splits_agree(splits, data_cfg)
    kinds = {type(v) for v in values}

    if isinstance(feature, ClassLabel) and not given:
        names = list(feature.names)
        log.info("label names from the data's class labels: %s", names)
    elif kinds <= {str}:
        names = given or sorted(values)
        if not given:
            log.info("label names: the distinct values of '%s', sorted: %s", label_col, names)
        unknown = values - set(names)
        if unknown:
            raise ConfigError(
                "data.label_names",
                f"label(s) {sorted(unknown)[:5]} in column '{label_col}' are not in {names}",
            )
        index = {name: i for i, name in enumerate(names)}
        return [str(n) for n in names], lambda value, _split: index[value]
    elif kinds <= {int, bool}:
        if given:
            names = given
        elif label_text_col:
            names = _names_from_text_column(splits, label_col, label_text_col)
        else:
            names = [str(v) for v in sorted(values)]
            log.warning(
                "labels in '%s' are integers without names; naming them by value: %s "
                "(set data.label_names to name them)",
                label_col,
                names,
            )
            index = {v: i for i, v in enumerate(sorted(values))}
            return names, lambda value, _split: index[value]
    else:
        example = next(v for v in values if type(v) not in (str, int, bool))
        raise ConfigError(
            "data.label_column",
            f"column '{label_col}' holds {type(example).__name__} values (e.g. {example!r}) that "
            "cannot be mapped to classes: use integer or string class labels",
        )

    out_of_range = sorted(v for v in values if not 0 <= int(v) < len(names))
    if out_of_range:
        raise ConfigError(
            "data.label_names" if given else "data.label_column",
            f"label id(s) {out_of_range[:5]} in column '{label_col}' are outside "
            f"0..{len(names) - 1} ({len(names)} names: {names})",
        )
    return [str(n) for n in names], lambda value, _split: int(value)


def _given_names(given: Sequence[object] | None) -> list[str] | None:
    """``data.label_names`` as a list of distinct names (None: derive them from the data)."""
    if given is None or (not isinstance(given, str) and len(given) == 0):
        return None
    if isinstance(given, str) or not all(isinstance(n, str | int) for n in given):
        raise ConfigError(
            "data.label_names", f"must be a list of names (e.g. [negative,positive]), got {given!r}"
        )
    names = [str(n) for n in given]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(
            "data.label_names", f"names must differ: {twice} given more than once in {names}"
        )
    return names


def _check_splits_agree(splits: dict[str, Dataset], data_cfg: DictConfig) -> None:
    """Every split holds labels of one kind (all text or all integers), and no label that the
    train split lacks (a class the model could never learn)."""
    label_col = data_cfg.label_column

    def kind(value: object) -> str:
        return "text" if isinstance(value, str) else "integer" if isinstance(value, int) else "?"

    train = splits["train"][label_col]
    train_kinds = {kind(v) for v in train}
    train_values = set(train)
    for name, split in splits.items():
        if name == "train":
            continue
        field = f"data.{name}_file" if data_cfg.get(f"{name}_file") else "data.label_column"
        where = where_is(data_cfg, name)
        kinds = {kind(v) for v in split[label_col] if not unlabelled(v, name)}
        if kinds and kinds != train_kinds and "?" not in kinds | train_kinds:
            raise ConfigError(
                field,
                f"labels in {where} are {'/'.join(sorted(kinds))} but "
                f"in {where_is(data_cfg, 'train')} "
                f"{'/'.join(sorted(train_kinds))}: use one kind of label "
                "in every split",
            )
        unseen = sorted(
            {v for v in set(split[label_col]) - train_values if not (isinstance(v, int) and v < 0)},
            key=str,
        )  # -1: unlabelled
        if unseen:
            numbers = all(str(v).lstrip("-").isdigit() for v in unseen) and not any(
                str(v).lstrip("-").isdigit() for v in train_values
            )
            hint = (
                "; integers there, text in train: use one kind of label in every split"
                if numbers
                else ""
            )
            raise ConfigError(
                field,
                f"label(s) {unseen[:5]} in {where} never occur in "
                f"{where_is(data_cfg, 'train')} (its labels: "
                f"{sorted(train_values, key=str)[:10]}): the model could "
                f"not learn them{hint}",
            )


def _names_from_text_column(splits: dict[str, Dataset], label_col: str, text_col: str) -> list[str]:
    pairs: dict[int, set[str]] = {}
    for name, split in splits.items():
        if text_col not in split.column_names:
            raise ConfigError(
                "data.label_text_column",
                f"column '{text_col}' is not in the data "
                f"(columns: {', '.join(split.column_names)})",
            )
        for label, text in zip(split[label_col], split[text_col], strict=True):
            if not unlabelled(label, name):
                pairs.setdefault(int(label), set()).add(str(text))
    ambiguous = {k: sorted(v) for k, v in pairs.items() if len(v) > 1}
    if ambiguous:
        raise ConfigError("data.label_text_column", f"ids with several names: {ambiguous}")
    missing = [i for i in range(max(pairs) + 1) if i not in pairs]
    if missing or min(pairs) < 0:
        raise ConfigError(
            "data.label_text_column", f"label ids are not 0..{max(pairs)} (missing: {missing})"
        )
    names = [next(iter(pairs[i])) for i in range(len(pairs))]
    log.info("label names from column '%s': %s", text_col, names)
    return names
