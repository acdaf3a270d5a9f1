"""The benchmarks page's tables are the committed result rows: benchmarks/report.py --check
fails when a row was added (or the page edited) without regenerating the tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_benchmark_tables_match_the_result_files():
    done = subprocess.run(
        [sys.executable, "benchmarks/report.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_gain_within_one_sd_of_zero_reads_as_no_clear_gain():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import report
    finally:
        sys.path.pop(0)
    clear = report._gain_line("shipped − recipe", [0.020, 0.025, 0.030], 0.015)
    assert clear == "shipped − recipe: +2.50 ± 0.50 points over 3 studies; target +1.5: met"
    noisy = report._gain_line("shipped − rival", [0.010, -0.005, 0.001], 0.0)
    assert "(within one sd of 0: no clear gain)" in noisy
    assert noisy.endswith("target +0.0: met")  # the mean, +0.20, is not below the target
    short = report._gain_line("best − recipe", [0.012, 0.008], 0.015)
    assert short.endswith("target +1.5: not met") and "no clear gain" not in short
