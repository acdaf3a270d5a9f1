"""harness: hyperparameter search for fine-tuning Hugging Face models.

Public API (everything else is private to its package; see the README's "Architecture"):

- ``harness.run(sweep, overrides=(), config_dir=None)``: run or resume a study from Python (a
  notebook), composed as ``python -m harness.sweep`` composes it, and get a
  ``harness.SweepResult`` back (best trial and params, the final stage's choice, the best
  checkpoint, the MLflow parent run, the summary) (``harness.api``; docs/python-api.md).
- ``harness.study.run_sweep(cfg)``: run or resume the study a composed config describes (one
  worker); ``harness.study.study_summary(cfg)``: the summary of a study in its storage.
- ``harness.space.SearchSpace``: a search space as data (parse, validate, suggest, apply);
  ``harness.space.MethodSpace``: the conditional space of a methods study.
- ``harness.checkpoint.load_checkpoint(path)``: a trial's checkpoint back as (model, tokenizer)
  (``harness.train.load_checkpoint``).
- ``harness.errors.ConfigError``: bad input, naming the config field or file at fault;
  ``harness.errors.StudyStopped``: the failure limit stopped the study (``.summary``)
  (``harness.base.errors``).
- ``harness.report.write_report(study, cfg, tracker=None)``: the study report (table, PNG plots,
  HTML page; logged to the parent run) as a ``Report``.
- ``harness.export.export_model(cfg)``: the best (or ``export.trial``) trial's model in a folder
  plain transformers loads; ``harness.predict.predict(model, tokenizer, texts)``: labels and
  probabilities (``harness.export.predict``).
- Command lines: ``python -m harness.sweep`` (``harness.sweep.cli``; ``study.workers=N`` starts N
  workers, ``harness.study.workers``), ``python -m harness.report``, ``python -m harness.export``,
  ``python -m harness.predict``; console scripts ``harness-sweep``, ``harness-report``,
  ``harness-export``, ``harness-predict`` (``harness.cli``).
"""

from typing import TYPE_CHECKING, Any

from harness import config as _config  # noqa: F401  (registers the config schemas and resolvers)

if TYPE_CHECKING:
    from harness.api import SweepResult, run

__version__ = "0.1.0"
__all__ = ["SweepResult", "run"]


def __getattr__(name: str) -> Any:  # Any: the attribute asked for (a function, a class)
    """``harness.run`` and ``harness.SweepResult``, imported on first use: :mod:`harness.api`
    imports the study (Optuna, MLflow), which ``import harness`` (the command line's fast path:
    ``--help``, a config error) never pays for."""
    if name in ("run", "SweepResult"):
        from harness import api

        return getattr(api, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
