"""Validation metrics through the ``evaluate`` library.

Bundled names (accuracy, f1, precision, recall, matthews_correlation) load from local module
files, offline; any other name, hub id or path goes to ``evaluate.load`` unchanged, which runs
that module's code: only with ``metrics_trust_remote_code=true``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.base.errors import ConfigError

if TYPE_CHECKING:
    from evaluate import EvaluationModule
    from transformers import EvalPrediction

BUNDLED = ("accuracy", "f1", "precision", "recall", "matthews_correlation")
_HERE = Path(__file__).resolve().parent


class MetricSuite:
    """The configured metrics, computed together; callable as a Trainer ``compute_metrics``."""

    def __init__(
        self,
        modules: Mapping[str, EvaluationModule],
        args: Mapping[str, Mapping[str, object]],  # each metric's keyword arguments
    ) -> None:
        self._modules = dict(modules)
        self._args = {name: dict(args.get(name) or {}) for name in modules}

    def compute(self, predictions: Sequence[int], references: Sequence[int]) -> dict[str, float]:
        results: dict[str, float] = {}
        for name, module in self._modules.items():
            try:
                out = module.compute(
                    predictions=predictions, references=references, **self._args[name]
                )
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"metric_args.{name}", f"metric '{name}' failed: {exc}") from exc
            for key, value in (out or {}).items():
                if isinstance(value, int | float):
                    results[key] = float(value)
        return results

    def __call__(self, eval_prediction: EvalPrediction) -> dict[str, float]:
        logits = eval_prediction.predictions
        if isinstance(logits, tuple):  # some models also return hidden states
            logits = logits[0]
        predictions = np.asarray(logits).argmax(axis=-1)
        return self.compute(predictions.tolist(), np.asarray(eval_prediction.label_ids).tolist())

    def output_names(self, num_labels: int) -> list[str]:
        """The names :meth:`compute` returns (found by computing on a tiny example)."""
        labels = list(range(num_labels)) * 2
        return sorted(self.compute(labels, labels[::-1]))


def load_metrics(
    names: Sequence[str],
    metric_args: Mapping[str, object] | None,
    trust_remote_code: bool = False,
) -> MetricSuite:
    """Load each named metric with ``evaluate.load`` (bundled names from local modules; any
    other runs code from the hub or a path, so it needs ``trust_remote_code``)."""
    if isinstance(names, str) or not names:
        raise ConfigError("metrics", f"must be a non-empty list of metric names, got {names!r}")
    foreign = [name for name in names if name not in BUNDLED]
    if foreign and not trust_remote_code:
        raise ConfigError(
            "metrics",
            f"'{foreign[0]}' is not bundled ({', '.join(BUNDLED)}): loading it runs "
            "the code of an evaluate module from the hub or a local path; allow it "
            "with metrics_trust_remote_code=true",
        )
    args: dict[str, Mapping[str, object]] = {}
    for name, given in (metric_args or {}).items():
        if name not in names:
            continue
        if not isinstance(given, Mapping):
            raise ConfigError(f"metric_args.{name}", "must be a mapping of keyword arguments")
        args[name] = given
    modules: dict[str, EvaluationModule] = {}
    for name in names:
        try:
            modules[name] = _bundled(name) if name in BUNDLED else _load(name)
        except Exception as exc:  # evaluate raises many kinds: FileNotFoundError, ConnectionError…
            raise ConfigError(
                "metrics",
                f"could not load metric '{name}' (bundled offline: {', '.join(BUNDLED)}; other "
                f"names need the Hugging Face hub or a local module path): {exc}",
            ) from exc
    return MetricSuite(modules, args)


@functools.cache
def _bundled(name: str) -> EvaluationModule:
    """A bundled metric, loaded once per process (evaluate builds a module from the script on
    every load: 0.7 s each; a module computes from scratch on every call, so sharing one
    between studies is as safe as sharing it between a study's trials, as every study does)."""
    return _load(str(_HERE / name))


def _load(source: str) -> EvaluationModule:
    import evaluate

    return evaluate.load(source, keep_in_memory=True)
