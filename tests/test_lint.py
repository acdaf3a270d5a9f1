"""The type checker guards the package: mypy (strict, as ``make lint`` runs it) passes on harness/
as it is, and fails on a copy with a planted type error, naming the file and line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.integration  # mypy over the package: ~10-30 s


def _mypy(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tree / ".mypy_cache")],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_planted_type_error_fails_the_type_check(tmp_path):
    shutil.copytree(
        ROOT / "harness", tmp_path / "harness", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    assert _mypy(tmp_path).returncode == 0  # the package as it is: clean

    planted = tmp_path / "harness" / "base" / "direction.py"
    planted.write_text(planted.read_text() + '\n\nWRONG: int = "not an int"\n')
    result = _mypy(tmp_path)
    assert result.returncode == 1, result.stdout
    assert "harness/base/direction.py" in result.stdout and "[assignment]" in result.stdout
