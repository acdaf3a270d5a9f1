"""Slow: the README's main command on the embedded model and data, shortened (make test-slow)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.embedded]
ROOT = Path(__file__).resolve().parents[2]


def test_lora_sweep_on_minilm_beats_the_majority_class(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = subprocess.run(
        [sys.executable, "-m", "harness.sweep", "+sweep=lora", "study.n_trials=2",
         "pruner=none", f"study.storage={storage}", f"study.output_dir={tmp_path}/study",
         f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
         f"tracking.artifact_location={tmp_path}/mlruns", "display.progress=false"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr
    assert "2 complete, 0 pruned, 0 failed" in result.stdout
    study = optuna.load_study(study_name="minilm-vader-lora", storage=storage)
    # 1,380 of the 2,520 non-test tweets are positive (0.548): a model that learned beats that
    assert study.best_value > 0.6
