"""Where and how a benchmark row was measured: every result row carries these fields.

``provenance()`` returns, flat (so that a row reads as one JSON object):

- ``machine``: one line, ``"<N> cpu, avx512_bf16"`` or ``"<N> cpu, no avx512_bf16"``, plus
  ``", <GPU name>"`` when torch sees a GPU. bf16 autocast on a CPU with AVX-512 BF16 changes
  the training trajectories, so rows compare only within one kind of machine;
- ``cpu_count``, ``cpu_model``, ``avx512_bf16`` and ``amx`` (the CPU's flags), ``gpu`` (null
  when none);
- ``versions``: python, harness (with its git commit, ``+dirty`` when tracked files differ),
  torch, transformers, peft, optuna, mlflow, datasets;
- ``date``: when the row was written (UTC, ISO 8601);
- ``command``: the command line that wrote it.

Rows committed before this helper existed lack these fields: benchmarks/results/README.md says
what is known about them.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("torch", "transformers", "peft", "optuna", "mlflow", "datasets")


def provenance() -> dict[str, Any]:
    """The machine, the package versions, the date and the command of this process."""
    flags, model = _cpu()
    gpu = _gpu()
    cpus = os.cpu_count()
    bf16 = "avx512_bf16" in flags
    machine = f"{cpus} cpu, {'avx512_bf16' if bf16 else 'no avx512_bf16'}"
    return {
        "machine": machine + (f", {gpu}" if gpu else ""),
        "cpu_count": cpus,
        "cpu_model": model,
        "avx512_bf16": bf16,
        "amx": "amx_bf16" in flags,
        "gpu": gpu,
        "versions": versions(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command(),
    }


def versions() -> dict[str, str | None]:
    """Python's, the harness's (version and commit) and each library's installed version."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    found["harness"] = _version("harness")
    commit = _git_commit()
    if commit and found["harness"]:
        found["harness"] += f" ({commit})"
    found.update({name: _version(name) for name in LIBRARIES})
    return found


def command() -> str:
    """This process's command line, the script's path relative to the checkout."""
    script = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    shown = (
        str(script.relative_to(ROOT))
        if script is not None and script.is_relative_to(ROOT)
        else (sys.argv[0] if sys.argv else "")
    )
    return shlex.join(["python", shown, *sys.argv[1:]])


def append_row(path: Path, row: dict[str, Any]) -> dict[str, Any]:
    """Append ``row`` with its provenance to a JSON-lines file; return what was written."""
    written = {**row, **provenance()}
    with path.open("a") as out:
        out.write(json.dumps(written) + "\n")
    return written


def _cpu() -> tuple[str, str | None]:
    """The CPU's flags and model name (Linux's /proc/cpuinfo; empty elsewhere)."""
    info = Path("/proc/cpuinfo")
    text = info.read_text() if info.exists() else ""
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    models = (line.split(":", 1)[1] for line in text.splitlines() if line.startswith("model name"))
    model = next((m.strip() for m in models), None)
    return flags, model or platform.processor() or None


def _gpu() -> str | None:
    """The first CUDA device's name, where torch is installed and sees one."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    """The checkout's short commit, ``+dirty`` when tracked files differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    except OSError:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


if __name__ == "__main__":
    print(json.dumps(provenance(), indent=2))
