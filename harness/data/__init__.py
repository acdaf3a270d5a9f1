"""Data for a study: load from a source, label, split, cap, tokenize (once per study)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.base.objects import build
from harness.data.labelled import LabelledData, label_and_split, tokenize

if TYPE_CHECKING:
    from omegaconf import DictConfig

__all__ = ["LabelledData", "load_labelled_data", "tokenize"]


def load_labelled_data(data_cfg: DictConfig) -> LabelledData:
    """Build ``data_cfg.source`` (by ``_target_``), then label, split and cap what it returns."""
    return label_and_split(build("data.source", data_cfg.source), data_cfg)
