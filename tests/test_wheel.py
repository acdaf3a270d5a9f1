"""The wheel installs anywhere: built from the sources, installed outside the checkout (no
downloads: ``--no-deps`` into a folder, the other packages from this environment), its
``harness-sweep`` runs a tiny sweep from an empty folder with the configs the wheel carries,
``harness-report``, ``harness-export`` and ``harness-predict`` then do their jobs on it, every
console script and ``python -m`` form answers ``--help`` (once), the Python API
(``harness.run``) runs a study, and a user's own ``--config-dir`` still works."""

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


def _tiny_sweep(tiny_model_dir: Path, sentiment_files: dict[str, Path]) -> list[str]:
    """A one-trial sweep of the tiny model (stores in the default places: the folder it runs
    in)."""
    return [
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
    ]


def test_the_wheels_console_scripts_sweep_report_export_and_predict(
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
    sweep = _tiny_sweep(tiny_model_dir, sentiment_files)
    result = _run([sys.executable, str(script), *sweep], work, env)
    assert "1 of 1 trials finished: 1 complete" in result.stdout, result.stdout + result.stderr
    # the default stores, relative to the folder it ran in
    assert (work / "sweeps" / "optuna.db").is_file()
    assert (work / "mlruns" / "mlflow.db").is_file()
    study = work / "sweeps" / "tiny-files-lora"
    assert (study / "best").exists()

    # the report of that study (the same overrides name it), written once (not run twice)
    report = _run(
        [
            sys.executable,
            str(installed / "bin" / "harness-report"),
            *sweep,
            "report.plots=[history]",
        ],
        work,
        env,
    )
    assert report.stdout.count("Report: ") == 1, report.stdout
    assert (study / "report" / "report.html").is_file()

    # its best trial's model exported, then labelling texts
    export = _run([sys.executable, str(installed / "bin" / "harness-export"), *sweep], work, env)
    assert "to sweeps/tiny-files-lora/export" in export.stdout, export.stdout
    assert (study / "export" / "config.json").is_file()
    predicted = _run(
        [
            sys.executable,
            str(installed / "bin" / "harness-predict"),
            str(study / "export"),
            "what a wonderful day",
            "this is awful",
        ],
        work,
        env,
    ).stdout.splitlines()
    assert len(predicted) == 2, predicted
    assert all(line.split("\t")[0] in ("negative", "neutral", "positive") for line in predicted)


# --help of each command, as a console script and as `python -m`: its own header, exactly once
HELP = {
    "sweep": "harness.sweep: hyperparameter search",
    "report": "harness.report: the report of a study",
    "export": "harness.export: the best trial's model",
    "predict": "Classify texts with an exported model",
    "storage-proxy": "Serve an Optuna RDB storage over gRPC",
}


@pytest.mark.parametrize("form", ["script", "module"])
@pytest.mark.parametrize("command", sorted(HELP))
def test_every_command_answers_help_once_from_the_wheel(installed, tmp_path, command, form):
    args = (
        [str(installed / "bin" / f"harness-{command}")]
        if form == "script"
        else ["-m", f"harness.{command.replace('-', '_')}"]
    )
    result = _run([sys.executable, *args, "--help"], tmp_path, _env(installed), timeout=120)
    assert result.stdout.count(HELP[command]) == 1, result.stdout
    assert result.stderr == "", result.stderr


def test_the_wheels_python_api_runs_a_study(installed, tmp_path, tiny_model_dir, sentiment_files):
    """harness.run from the installed wheel, in an empty folder: a new study, then a resume."""
    work = tmp_path / "notebook"
    work.mkdir()
    script = (
        "import sys, optuna, harness\n"
        "assert harness.__file__.startswith(sys.argv[1]), harness.__file__\n"
        "overrides = sys.argv[2:]\n"
        "for n in (1, 2):\n"
        "    result = harness.run('lora', [*overrides, f'study.n_trials={n}'])\n"
        "    study = optuna.load_study(study_name=result.study_name, storage=result.storage)\n"
        "    assert result.best_trial == study.best_trial.number, (result, study.best_trial)\n"
        "    print('trials', result.complete + result.pruned, 'best', result.best_trial)\n"
        "print('checkpoint', result.best_checkpoint)\n"
    )
    overrides = [o for o in _tiny_sweep(tiny_model_dir, sentiment_files) if "n_trials" not in o]
    result = _run(
        [sys.executable, "-c", script, str(installed), *overrides[1:]], work, _env(installed)
    )
    lines = result.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:2]] == [["trials", "1"], ["trials", "2"]], lines
    assert lines[2] == f"checkpoint {work / 'sweeps' / 'tiny-files-lora' / 'best'}", lines


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
