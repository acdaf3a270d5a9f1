"""The wheel installs anywhere: built from the sources, installed outside the checkout (no
downloads: ``--no-deps`` into a folder, the other packages from this environment), its
``harness-sweep`` runs a tiny sweep from an empty folder with the configs the wheel carries, and
a user's own ``--config-dir`` still works."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # the wheel built, installed and run

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("harness", "conf", "pyproject.toml", "setup.py", "README.md")


def _env(site: Path) -> dict[str, str]:
    """This environment with only the installed wheel on the path (not the checkout)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "PYTHONPATH": str(site), "PYTHONUNBUFFERED": "1"}


def _run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from a copy of the sources, installed into ``site/``."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    for name in SOURCES:  # a copy: the build leaves build/ and *.egg-info in the tree it reads
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(path, source / name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-q",
            "-w",
            str(tmp / "dist"),
            str(source),
        ],
        tmp,
        env,
    )
    [wheel] = (tmp / "dist").glob("harness-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for config in ("config.yaml", "sweep/lora.yaml", "model/minilm.yaml", "export_cli.yaml"):
        assert f"harness/_conf/{config}" in names, config
    assert not any(n.startswith("conf/") for n in names)
    assert "harness/py.typed" in names  # typed (PEP 561): mypy users see its annotations
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
            "-q",
            "--target",
            str(tmp / "site"),
            str(wheel),
        ],
        tmp,
        env,
    )
    return tmp / "site"


def test_the_wheels_harness_sweep_runs_a_tiny_sweep_from_an_empty_folder(
    installed, tmp_path, tiny_model_dir, sentiment_files
):
    work = tmp_path / "empty"
    work.mkdir()
    env = _env(installed)
    where = _run(
        [
            sys.executable,
            "-c",
            "import harness, harness.config.command as c; print(harness.__file__); print(c.CONF)",
        ],
        work,
        env,
    ).stdout.splitlines()
    assert where == [
        str(installed / "harness" / "__init__.py"),
        str(installed / "harness" / "_conf"),
    ]
    script = installed / "bin" / "harness-sweep"
    assert script.is_file()
    result = _run(
        [
            sys.executable,
            str(script),
            "+sweep=lora",
            "model.name=tiny",
            f"model.name_or_path={tiny_model_dir}",
            "data=files",
            f"data.train_file={sentiment_files['train']}",
            f"data.validation_file={sentiment_files['validation']}",
            "data.max_train_samples=64",
            "study.n_trials=1",
            "train.num_train_epochs=1",
            "train.evals_per_epoch=1",
            "display.progress=false",
            "report.enabled=false",
            "final.seeds=0",
        ],
        work,
        env,
    )
    assert "1 of 1 trials finished: 1 complete" in result.stdout, result.stdout + result.stderr
    # the default stores, relative to the folder it ran in
    assert (work / "sweeps" / "optuna.db").is_file()
    assert (work / "mlruns" / "mlflow.db").is_file()
    assert (work / "sweeps" / "tiny-files-lora" / "best").exists()


def test_the_wheel_reads_a_users_own_config_dir(installed, tmp_path):
    own = tmp_path / "myconf" / "sweep"
    own.mkdir(parents=True)
    (own / "mine.yaml").write_text(
        "# @package _global_\nsearch_space:\n  train.learning_rate: {type: float, low: 1.0e-4, "
        "high: 7.0e-4, log: true}\n"
    )
    result = _run(
        [
            sys.executable,
            str(installed / "bin" / "harness-sweep"),
            f"--config-dir={own.parent}",
            "+sweep=mine",
            "--cfg",
            "job",
        ],
        tmp_path,
        _env(installed),
    )
    assert "high: 0.0007" in result.stdout, result.stdout
    assert "storage: sqlite:///sweeps/optuna.db" in result.stdout  # the wheel's config.yaml
