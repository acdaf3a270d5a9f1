"""Accuracy (scikit-learn), as an `evaluate` module that loads offline."""

import evaluate
from sklearn.metrics import accuracy_score

from harness.metrics._module import classification_info


class Accuracy(evaluate.Metric):
    def _info(self):
        return classification_info("Accuracy of predicted class ids against the true ones.")

    def _compute(self, predictions, references, **kwargs):
        return {"accuracy": float(accuracy_score(references, predictions, **kwargs))}
