"""The README's own-data lines, run exactly as written (``python`` is this interpreter) on a small
CSV the test writes: the default LoRA sweep of the embedded MiniLM on a user's file."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.configs import write_sentiment_csv

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- own-data:start -->", "<!-- own-data:end -->"
ROWS = 90  # 30 per label: the carved validation split (15 %) holds every label


def own_data_commands(text: str) -> list[str]:
    """The commands of the fenced bash block between the own-data markers: comment lines
    dropped, backslash continuations joined."""
    block = text.split(START, 1)[1].split(END, 1)[0]
    fenced = re.search(r"```bash\n(.*?)```", block, re.DOTALL)
    assert fenced, f"no ```bash block between {START} and {END} in {README}"
    lines = [line for line in fenced.group(1).splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", "", "\n".join(lines))
    return [line.strip() for line in joined.splitlines() if line.strip()]


def test_the_block_is_read_as_one_command():
    text = f"x\n{START}\n```bash\n# a comment\npython -m a b \\\n  c=d \\\n  e=f\n```\n{END}\n"
    assert own_data_commands(text) == ["python -m a b c=d e=f"]


@pytest.mark.integration
@pytest.mark.embedded
@pytest.mark.slow
def test_the_readme_own_data_lines_run_as_written(tmp_path):
    text = README.read_text()
    if START not in text or END not in text:
        pytest.skip(f"README.md has no {START} … {END} block yet")
    commands = own_data_commands(text)
    assert commands and all(c.startswith("python ") for c in commands), commands
    assert "reviews.csv" in " ".join(commands)
    write_sentiment_csv(tmp_path / "reviews.csv", ROWS, seed=5)
    for command in commands:
        args = [sys.executable, *shlex.split(command)[1:]]
        result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=1800)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-4000:]
        # the summary: the study of the user's data, trained whole (no demo cap)
        assert re.search(r"Study 'minilm-files-lora' \(.*\): 12 of 12 trials finished", output), (
            output[-4000:]
        )
        assert "MLflow UI: mlflow ui" in output
        assert f"train {ROWS - 14}, validation 14;" in output  # 15 % carved, nothing capped
