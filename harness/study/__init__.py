"""A study: setup (check the config, prepare what trials share) → search (one trial after
another: sample → train → record) → close, with recovery of stopped trials, a failure limit,
worker processes and the summary."""

from harness.study.run import help_final_stage, run_sweep, study_summary
from harness.study.setup import prepare_study, validate_config
from harness.study.storage import init_stores
from harness.study.workers import HELPER_ENV, FinalHelpers, run_workers

__all__ = [
    "HELPER_ENV",
    "FinalHelpers",
    "help_final_stage",
    "init_stores",
    "prepare_study",
    "run_sweep",
    "run_workers",
    "study_summary",
    "validate_config",
]
