"""Export of a trial's model: a folder plain transformers (+ peft) loads, with its model card;
optionally registered in MLflow. :func:`predict` labels texts with it."""

from harness.export._export import Exported, export_model
from harness.export.predict import Prediction, accuracy_on, predict

__all__ = ["Exported", "Prediction", "accuracy_on", "export_model", "predict"]
