"""How to reproduce a run: the code (git commits), the command, the user, the library versions
and the data, recorded on every run the harness creates (the study's parent run and each trial's).

Tags (names below): ``harness.git.commit`` / ``harness.git.dirty`` for the harness checkout
(when the package runs from a git checkout) and ``harness.workdir.git.*`` for the working
directory's repository when that is another one; MLflow's own ``mlflow.source.git.commit``,
``mlflow.source.name`` and ``mlflow.user``; ``harness.command`` (passwords masked);
``harness.version.<library>``. The data is logged as the run's input, one MLflow dataset per
split (``mlflow.data``): its digest is the split's fingerprint that the study stores for its
resume check (``harness.inputs``), its profile the number of rows, its source the files, the
hub dataset or the harness's own loader.
"""

from __future__ import annotations

import getpass
import json
import logging
import platform
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from harness.base.errors import first_line
from harness.base.secrets import mask

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.data.dataset import Dataset
    from mlflow.data.dataset_source import DatasetSource
    from omegaconf import DictConfig

log = logging.getLogger(__name__)

GIT_COMMIT_TAG = "harness.git.commit"  # the harness checkout's commit
GIT_DIRTY_TAG = "harness.git.dirty"  # "true" when its tracked files differ from the commit
WORKDIR_COMMIT_TAG = "harness.workdir.git.commit"  # the working directory's repository, when
WORKDIR_DIRTY_TAG = "harness.workdir.git.dirty"  # it is not the harness checkout
WORKDIR_ROOT_TAG = "harness.workdir.git.root"
COMMAND_TAG = "harness.command"
VERSION_TAG = "harness.version.{}"  # harness, python and each library below
MODEL_TAG = "harness.inputs.model"  # the base model's identity (files, commit or package)
MLFLOW_COMMIT_TAG = "mlflow.source.git.commit"
MLFLOW_SOURCE_TAG = "mlflow.source.name"
MLFLOW_USER_TAG = "mlflow.user"
CONTEXT_TAG = "mlflow.data.context"  # a dataset input's split
LIBRARIES = ("harness", "torch", "transformers", "peft", "datasets", "optuna", "mlflow")
_IDENTITY = re.compile(r"sha256:(?P<digest>[0-9a-f]+) \((?P<rows>\d+) rows\)")


@dataclass
class Provenance:
    """What every run of this process records: tags, and the data splits as dataset inputs."""

    tags: dict[str, str] = field(default_factory=dict)
    datasets: list[tuple[str, Dataset]] = field(default_factory=list)  # (split, its dataset)


def describe(inputs: Mapping[str, str], data_cfg: DictConfig) -> Provenance:
    """This process's provenance; ``inputs``: the study's input identity (``harness.inputs``:
    each split's ``sha256:<digest> (<rows> rows)`` under its field, the model's identity)."""
    tags = {**code_tags(), COMMAND_TAG: command_line()}
    if "model.name_or_path" in inputs:
        tags[MODEL_TAG] = mask(str(inputs["model.name_or_path"]))
    datasets = []
    for key, identity in inputs.items():
        found = _IDENTITY.fullmatch(str(identity))
        if not key.startswith("data.") or found is None:
            continue
        split = key.removeprefix("data.").removesuffix("_file")
        datasets.append(
            (split, split_dataset(data_cfg, split, found["digest"], int(found["rows"])))
        )
    return Provenance(tags, datasets)


def record(client: MlflowClient, run_id: str, provenance: Provenance | None) -> None:
    """Tag run ``run_id`` and log the data as its input (best effort: a store that refuses
    is a warning, never a failed trial)."""
    if provenance is None:
        return
    from mlflow.entities import DatasetInput, InputTag, RunTag

    try:
        client.log_batch(run_id, tags=[RunTag(k, v[:5000]) for k, v in provenance.tags.items()])
        if provenance.datasets:
            client.log_inputs(
                run_id,
                datasets=[
                    DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(CONTEXT_TAG, split)])
                    for split, dataset in provenance.datasets
                ],
            )
    except Exception as exc:
        log.warning(
            "could not record the provenance of MLflow run %s: %s", run_id, mask(first_line(exc))
        )


def code_tags() -> dict[str, str]:
    """Git commits, user, entry point and versions (read once per sweep, when it starts)."""
    tags: dict[str, str] = {
        MLFLOW_USER_TAG: _user(),
        VERSION_TAG.format("python"): platform.python_version(),
    }
    for name in LIBRARIES:
        try:
            tags[VERSION_TAG.format(name)] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    checkout = Path(__file__).resolve().parents[2]  # the folder holding the harness package
    harness_git = git_state(checkout)
    if harness_git is not None and harness_git[0] != checkout:  # installed inside another repo
        harness_git = None
    if harness_git is not None:
        tags[GIT_COMMIT_TAG], tags[GIT_DIRTY_TAG] = harness_git[1], harness_git[2]
    workdir_git = git_state(Path.cwd())
    if workdir_git is not None and (harness_git is None or workdir_git[0] != harness_git[0]):
        root, tags[WORKDIR_COMMIT_TAG], tags[WORKDIR_DIRTY_TAG] = workdir_git
        tags[WORKDIR_ROOT_TAG] = str(root)
    commit = tags.get(GIT_COMMIT_TAG) or tags.get(WORKDIR_COMMIT_TAG)
    if commit:
        tags[MLFLOW_COMMIT_TAG] = commit
    tags[MLFLOW_SOURCE_TAG] = _entry_point()
    return tags


def git_state(folder: Path) -> tuple[Path, str, str] | None:
    """(repository root, HEAD commit, "true"/"false" dirty) of the git repository holding
    ``folder``; None outside one (or without git). Dirty: tracked files differ from HEAD
    (untracked files do not count)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()

    try:
        root = Path(git("rev-parse", "--show-toplevel")).resolve()
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return root, commit, "true" if dirty else "false"


def command_line() -> str:
    """The command this process runs (``python -m harness.sweep …``), passwords masked."""
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    argv[0] = Path(argv[0]).name
    return mask(shlex.join(argv))


def split_dataset(data_cfg: DictConfig, split: str, digest: str, rows: int) -> Dataset:
    """One split of the study's data as an MLflow dataset (metadata only: the data stays
    where it is)."""
    from mlflow.data.meta_dataset import MetaDataset

    # mypy does not follow mlflow (its classes are Any to it)
    class SplitDataset(MetaDataset):  # type: ignore[misc]
        @property
        def profile(self) -> dict[str, object]:
            return {"num_rows": rows, "split": split}

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(self.profile)}

    return SplitDataset(_source(data_cfg, split), name=str(data_cfg.name), digest=digest)


def _source(data_cfg: DictConfig, split: str) -> DatasetSource:
    """Where a split comes from: its local file, its hub dataset, or the loader that built it."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource
    from mlflow.data.sources import LocalArtifactDatasetSource

    target = str(data_cfg.source.get("_target_", ""))
    file = data_cfg.get(f"{split}_file")
    if file:
        return LocalArtifactDatasetSource(str(Path(str(file)).expanduser().resolve()))
    if target.endswith("hub_dataset") and data_cfg.get("path"):
        return HuggingFaceDatasetSource(
            path=str(data_cfg.path),
            split=split,
            config_name=data_cfg.get("config_name"),
            revision=data_cfg.get("revision"),
        )
    settings = {k: str(v) for k, v in data_cfg.source.items() if k not in ("_target_", "cache_dir")}
    return CodeDatasetSource({"loader": target, "split": split, **settings})


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name (a container with an unnamed uid)
        return "unknown"


def _entry_point() -> str:
    """``harness.sweep`` for ``python -m harness.sweep``, else the script's name."""
    argv = list(getattr(sys, "orig_argv", None) or [])
    if "-m" in argv[:-1]:
        return str(argv[argv.index("-m") + 1])
    return Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
