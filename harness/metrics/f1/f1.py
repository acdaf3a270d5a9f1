"""F1 score (scikit-learn), as an `evaluate` module that loads offline."""

import evaluate
from sklearn.metrics import f1_score

from harness.metrics._module import classification_info


class F1(evaluate.Metric):
    def _info(self):
        return classification_info("F1 score of predicted class ids against the true ones.")

    def _compute(self, predictions, references, **kwargs):
        return {"f1": float(f1_score(references, predictions, **kwargs))}
