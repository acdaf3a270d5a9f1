"""What a study records: Optuna's trials (queries over them) and the MLflow view of them (the
tracker), with every attribute, tag, param and metric name defined once in
:mod:`harness.records.schema`."""

from harness.records import schema, trials
from harness.records.lookup import build_tracker, load_study, open_tracker
from harness.records.runs import RunView, TrialRun
from harness.records.tracker import Tracker

__all__ = [
    "RunView",
    "Tracker",
    "TrialRun",
    "build_tracker",
    "load_study",
    "open_tracker",
    "schema",
    "trials",
]
