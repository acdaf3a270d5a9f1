"""Matthews correlation coefficient (scikit-learn), as an `evaluate` module that loads offline."""

import evaluate
from sklearn.metrics import matthews_corrcoef

from harness.metrics._module import classification_info


class MatthewsCorrelation(evaluate.Metric):
    def _info(self):
        return classification_info(
            "Matthews correlation coefficient of predicted class ids against the true ones."
        )

    def _compute(self, predictions, references, **kwargs):
        return {"matthews_correlation": float(matthews_corrcoef(references, predictions, **kwargs))}
