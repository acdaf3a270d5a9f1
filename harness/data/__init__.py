"""Data for a study: load from a source, label, split, cap, tokenize (once per study)."""

from __future__ import annotations

from typing import Any

from harness.data.prepare import LabelledData, prepare, tokenize

__all__ = ["LabelledData", "load_labelled_data", "tokenize"]


def load_labelled_data(data_cfg: Any) -> LabelledData:
    """Instantiate ``data_cfg.source`` (by ``_target_``) and prepare what it returns."""
    from harness.errors import instantiate

    raw = instantiate("data.source", data_cfg.source)
    return prepare(raw, data_cfg)
