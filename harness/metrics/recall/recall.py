"""Recall (scikit-learn), as an `evaluate` module that loads offline."""

import evaluate
from sklearn.metrics import recall_score

from harness.metrics._module import classification_info


class Recall(evaluate.Metric):
    def _info(self):
        return classification_info("Recall of predicted class ids against the true ones.")

    def _compute(self, predictions, references, **kwargs):
        return {"recall": float(recall_score(references, predictions, **kwargs))}
