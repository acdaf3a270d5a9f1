"""harness: hyperparameter search for fine-tuning Hugging Face models.

Public API (everything else is private to its package; see the README's "Architecture"):

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

from harness import config as _config  # noqa: F401  (registers the config schemas and resolvers)

__version__ = "0.1.0"
