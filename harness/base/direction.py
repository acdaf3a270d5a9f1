"""Which of two values of a metric is better, in a study's direction (``maximize`` or
``minimize``): one rule for the study's records and for a fine-tune's callbacks."""

from __future__ import annotations

import math


def is_better(value: float, best: float | None, direction: str) -> bool:
    """Is ``value`` better than ``best`` (None or NaN: nothing yet) in ``direction``?"""
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value > best if direction == "maximize" else value < best
