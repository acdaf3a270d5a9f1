"""Data for a study: load from a source, label, split, cap, tokenize (once per study)."""

from __future__ import annotations

from typing import Any

from harness.base.objects import build
from harness.data.labelled import LabelledData, label_and_split, tokenize

__all__ = ["LabelledData", "load_labelled_data", "tokenize"]


def load_labelled_data(data_cfg: Any) -> LabelledData:
    """Build ``data_cfg.source`` (by ``_target_``), then label, split and cap what it returns."""
    return label_and_split(build("data.source", data_cfg.source), data_cfg)
