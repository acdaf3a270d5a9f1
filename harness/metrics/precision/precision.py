"""Precision (scikit-learn), as an `evaluate` module that loads offline."""

import evaluate
from sklearn.metrics import precision_score

from harness.metrics._module import classification_info


class Precision(evaluate.Metric):
    def _info(self):
        return classification_info("Precision of predicted class ids against the true ones.")

    def _compute(self, predictions, references, **kwargs):
        return {"precision": float(precision_score(references, predictions, **kwargs))}
