"""A user's own config folder (``--config-dir``) reaches the worker processes and the "Resume
or extend" line: a sweep that exists only there runs with study.workers=2."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # a sweep from a user's config dir in a subprocess

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # two worker processes start and load the model (~1.5 min on 2 cores)
def test_workers_and_the_resume_line_keep_the_config_dir(sweep_overrides, tmp_path):
    own = tmp_path / "my-conf" / "sweep"
    own.mkdir(parents=True)
    shutil.copy(ROOT / "conf" / "sweep" / "lora.yaml", own / "mine.yaml")
    overrides = [o.replace("+sweep=lora", "+sweep=mine") for o in sweep_overrides]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.sweep",
            f"--config-dir={tmp_path}/my-conf",
            *overrides,
            "study.n_trials=2",
            "study.workers=2",
            "train.num_train_epochs=1",
            "report.enabled=false",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 complete" in result.stdout or "complete, " in result.stdout
    resume = next(
        line for line in result.stdout.splitlines() if line.startswith("Resume or extend:")
    )
    assert f"--config-dir={tmp_path}/my-conf" in resume and "+sweep=mine" in resume
