"""Shared pieces of the bundled `evaluate` metric modules (scikit-learn implementations).

Each bundled metric is a folder ``<name>/<name>.py`` that ``evaluate.load`` takes as a local
path, so the defaults work with no access to the Hugging Face hub.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evaluate import MetricInfo

_INPUTS = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
    **kwargs: passed to the scikit-learn function (e.g. average="macro" for f1).
"""


def classification_info(description: str, citation: str = "") -> MetricInfo:
    """The ``MetricInfo`` every bundled metric shares: integer predictions and references."""
    import datasets
    import evaluate

    return evaluate.MetricInfo(
        description=description,
        citation=citation,
        inputs_description=_INPUTS,
        features=datasets.Features(
            {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
        ),
        reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html"],
    )
