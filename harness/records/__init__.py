"""What a study records: Optuna's trials (queries over them) and the MLflow view of them (the
tracker), with every attribute, tag, param and metric name defined once in
:mod:`harness.records.schema`.

Import the module you need (``from harness.records import schema, trials``,
``harness.records.lookup.build_tracker``): this package imports none of them itself, so that
reading the names in :mod:`~harness.records.schema` (the search space does, on the command
line's fast path) does not load Optuna or MLflow.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.records.lookup import build_tracker, load_study, open_tracker
    from harness.records.runs import RunView, TrialRun
    from harness.records.tracker import Tracker

# The names this package gave before it stopped importing its modules (a tracking config may
# name harness.records.Tracker, as conf/tracking/mlflow.yaml did): loaded on first use.
_MOVED = {
    "Tracker": "harness.records.tracker",
    "RunView": "harness.records.runs",
    "TrialRun": "harness.records.runs",
    "build_tracker": "harness.records.lookup",
    "load_study": "harness.records.lookup",
    "open_tracker": "harness.records.lookup",
}


def __getattr__(name: str) -> Any:  # Any: a class or a function, by name
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'harness.records' has no attribute {name!r}")


__all__ = ["RunView", "Tracker", "TrialRun", "build_tracker", "load_study", "open_tracker"]
