"""``python -m harness.export +sweep=NAME [export.dir=…] [key=value ...]``: the best trial's
model in a folder that plain transformers (+ peft) loads.

The folder holds the weights (a peft adapter merged into them, or kept separate:
``export.merge_adapter``), the tokenizer, ``labels.json``, the trial's composed ``config.yaml``,
``metrics.json`` and a model card (``README.md``: data, method, hyperparameters, metrics, how to
load). ``export.register=true`` also logs it as an MLflow model
(:mod:`harness.export.mlflow_model`) and registers it in MLflow's model registry under the
study's name. Read-only on the study; the folder is written whole or not at all. Exit status 2
on bad input.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from harness.base.errors import ConfigError, first_line
from harness.base.files import replace_folder
from harness.base.output_folders import check_replaceable, mark
from harness.base.secrets import mask
from harness.config import settings
from harness.export.card import SOURCES, CardInfo, base_model_id, model_card
from harness.export.mlflow_model import save_mlflow_model
from harness.export.source import checkpoint_of, chosen_export, other_run
from harness.records import schema, trials
from harness.records.final import FinalRecord
from harness.records.lookup import load_study, open_tracker
from harness.records.runs import RunView
from harness.records.tracker import Tracker
from harness.train.checkpoints import VAL_LOGITS, load_checkpoint
from harness.train.ensemble import write_ensemble

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

COPIED = ("adapter_config.json", "adapter_model.safetensors", "config.json")  # separate adapter


@dataclass
class Exported:
    folder: Path
    trial: int
    value: float
    merged: bool
    registered: str | None = None  # "name version N"
    seed: int | None = None  # the final stage's chosen seed (final-<trial>-seed<k>)
    members: int = 0  # an ensemble's models (0: a single model)
    soup: list[str] | None = None  # a soup's ingredients (final-<trial>-seed<k>)

    def format(self) -> str:
        kind = "merged weights" if self.merged else "separate adapter"
        what = (
            f"trial {self.trial}"
            if self.seed is None
            else f"final-{self.trial}-seed{self.seed} (the final stage's chosen configuration)"
        )
        if self.soup:
            what = f"the final stage's soup of {', '.join(self.soup)} (a weight average)"
        if self.members:
            what = (
                f"the final stage's ensemble of {self.members} models (chosen "
                f"configuration: trial {self.trial})"
            )
            kind = f"each {kind}"
        lines = [
            f"Exported {what} (validation {self.value:.4f}) to {self.folder} ({kind})",
            f'Try it: python -m harness.predict {self.folder} "some text"',
        ]
        if self.registered:
            lines.append(f"Registered in MLflow: {self.registered}")
        return "\n".join(lines)


def export_model(cfg: DictConfig) -> Exported:
    """Export the trial ``export.trial`` (default: the best) of the study the config names."""
    merge = settings(cfg, "export").merge_adapter
    study = load_study(cfg)
    tracker = open_tracker(cfg, study)
    choice = chosen_export(study, cfg.export.get("trial"))
    trial, run_id = choice.trial, choice.run_id
    best = trials.best_trial(study)
    target = Path(str(cfg.export.dir))
    check_replaceable(
        "export.dir",
        target,
        "export",
        study.study_name,
        cfg,
        default=Path(str(cfg.study.output_dir)) / "export",
    )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    except OSError as exc:
        raise ConfigError("export.dir", f"cannot write '{target}': {exc.strerror or exc}") from None
    ensemble = choice.record.get("ensemble") if choice.seed is not None else None
    try:
        with tempfile.TemporaryDirectory(prefix="harness-export-") as download:
            if ensemble:
                source, merged, peft_type = _write_ensemble(
                    cfg, ensemble, tracker, Path(download), scratch, merge
                )
            else:
                source = checkpoint_of(cfg, choice, tracker, Path(download))
                merged, peft_type = _write_model(source, scratch, merge)
            labels = json.loads((source / "labels.json").read_text())["id2label"]
            label_names = [labels[str(i)] for i in range(len(labels))]
            (scratch / "labels.json").write_text(
                json.dumps(
                    {
                        "id2label": dict(enumerate(label_names)),
                        "label2id": {n: i for i, n in enumerate(label_names)},
                    },
                    indent=2,
                )
                + "\n"
            )
            run = tracker.run(run_id) if tracker else None
            (scratch / "config.yaml").write_text(_config_yaml(cfg, trial, tracker, run_id))
            metrics = {
                k.removeprefix(schema.BEST_VAL_PREFIX): v
                for k, v in sorted((run.metrics if run else {}).items())
                if k.startswith(schema.BEST_VAL_PREFIX)
            }
            metrics = metrics or {str(cfg.study.metric): trials.study_value(trial)}
            (scratch / "metrics.json").write_text(
                json.dumps(
                    {
                        "study": study.study_name,
                        "trial": trial.number,
                        "split": "validation",
                        **metrics,
                        **choice.final_figures(),
                    },
                    indent=2,
                )
                + "\n"
            )
            exported = Exported(
                target,
                trial.number,
                choice.value,
                merged,
                seed=choice.seed,
                members=len(ensemble["members"]) if ensemble else 0,
                soup=choice.record.get("soup", {}).get("members") if choice.soup else None,
            )
            card = _card_info(
                cfg, study, trial, best, run, tracker, metrics, label_names, merged, peft_type
            )
            if ensemble:
                card["ensemble"] = ensemble
            if choice.soup:
                card["soup"] = choice.record["soup"]
            model_card(card).save(scratch / "README.md")
            scratch.chmod(0o755)
            mark(scratch, "export", study.study_name)
        replace_folder(target, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if cfg.export.register:
        exported.registered = _register(tracker, run_id, target, study.study_name, cfg)
        card["registered"] = exported.registered
        model_card(card).save(target / "README.md")
    return exported


def _write_ensemble(
    cfg: DictConfig,
    ensemble: FinalRecord,  # the final stage's record of the ensemble
    tracker: Tracker | None,
    download: Path,
    folder: Path,
    merge: str,
) -> tuple[Path, bool, str | None]:
    """An ensemble's members into ``folder``/member-<i>, and its ``ensemble.json``: (the first
    member's source, merged?, peft type or None)."""
    root = Path(str(cfg.study.output_dir))
    members, first, merged, peft_type = [], None, False, None
    for index, member in enumerate(ensemble["members"]):
        source = _member_source(
            root / member["checkpoint"],
            member.get("run_id"),
            tracker,
            download / f"member-{index}",
            member["name"],
        )
        target = folder / f"member-{index}"
        target.mkdir()
        merged, peft_type = _write_model(source, target, merge)
        members.append((member["name"], target, float(member["weight"])))
        first = first or source
    write_ensemble(folder, members)
    assert first is not None
    return first, merged, peft_type


def _member_source(
    local: Path, run_id: str | None, tracker: Tracker | None, download: Path, name: str
) -> Path:
    """An ensemble member's checkpoint: the local folder if kept (and its run's), else its
    MLflow run's."""
    theirs = other_run(local, run_id) if (local / "labels.json").is_file() else None
    if (local / "labels.json").is_file() and theirs is None:
        return local
    if tracker is not None and run_id:
        try:
            download.mkdir(parents=True, exist_ok=True)
            path = tracker.download(run_id, schema.CHECKPOINT_ARTIFACT, download)
            if (path / "labels.json").is_file():
                return path
        except Exception:  # unreachable or removed: said below
            pass
    if theirs is not None:
        raise ConfigError(
            "export.trial",
            f"the shipped ensemble's member {name}: {local} holds "
            f"the checkpoint of another run ({theirs}), not of "
            f"its run ({run_id}), which has none in MLflow: "
            "another study wrote to this folder",
        )
    raise ConfigError(
        "export.trial",
        f"the shipped ensemble's member {name} has no checkpoint "
        f"(not in {local}, not in its MLflow run): export a "
        "single trial with export.trial=N",
    )


def _write_model(source: Path, folder: Path, merge: str) -> tuple[bool, str | None]:
    """Weights and tokenizer into ``folder`` (``merge``: auto, true or false): (merged?, peft
    type or None)."""
    if not (source / "adapter_config.json").is_file():  # full fine-tune: copy as it is
        for path in source.iterdir():
            if path.is_file() and path.name not in ("trial.json", "README.md", VAL_LOGITS):
                shutil.copy2(path, folder / path.name)
        return False, None
    from peft import PeftConfig

    settings = PeftConfig.from_pretrained(source)
    peft_type = str(settings.peft_type.value)
    if merge == "true" and settings.is_prompt_learning:
        raise ConfigError(
            "export.merge_adapter",
            f"a {peft_type} adapter cannot be merged into the weights: use auto or false",
        )
    if merge == "false" or settings.is_prompt_learning:
        for name in COPIED:
            shutil.copy2(source / name, folder / name)
        _, tokenizer = load_checkpoint(source)
        tokenizer.save_pretrained(folder)
        return False, peft_type
    model, tokenizer = load_checkpoint(source)
    model = model.merge_and_unload()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return True, peft_type


def _config_yaml(
    cfg: DictConfig, trial: FrozenTrial, tracker: Tracker | None, run_id: str | None
) -> str:
    """The trial's composed config, as its MLflow run recorded it (passwords masked); the
    study's config with the trial's params noted where the run is not reachable."""
    if tracker is not None and run_id:
        try:
            with tempfile.TemporaryDirectory() as folder:
                return tracker.download(run_id, schema.CONFIG_ARTIFACT, Path(folder)).read_text()
        except Exception:  # not reachable: the study's config below
            pass
    params = json.dumps(trial.params, indent=2)
    return (
        f"# the study's config; trial {trial.number} sampled these values over it:\n"
        + "\n".join(f"# {line}" for line in params.splitlines())
        + "\n"
        + mask(OmegaConf.to_yaml(cfg))
    )


def _card_info(
    cfg: DictConfig,
    study: optuna.Study,
    trial: FrozenTrial,
    best: FrozenTrial | None,
    run: RunView | None,
    tracker: Tracker | None,
    metrics: dict[str, float],
    label_names: list[str],
    merged: bool,
    peft_type: str | None,
) -> CardInfo:
    data = cfg.data
    target = str(data.source.get("_target_", ""))
    source = SOURCES.get(target, target)
    if target.endswith("local_files"):
        files = [
            Path(str(data.get(k))).name
            for k in ("train_file", "validation_file", "test_file")
            if data.get(k)
        ]
        source += f" ({', '.join(files)})"
    elif target.endswith("hub_dataset"):
        source += f" (`{data.get('path')}`)"
    params = run.params if run else {}
    evaluations = {"validation": metrics}
    test = {
        k.removeprefix(schema.TEST_PREFIX): v
        for k, v in sorted((run.metrics if run else {}).items())
        if k.startswith(schema.TEST_PREFIX)
    }
    if test:  # the run was evaluated on the test split (a final stage)
        evaluations["test"] = test
    sizes = {}
    parent_run = tracker.run(tracker.parent_run_id) if tracker else None
    parent = parent_run.params if parent_run else {}
    for split in ("train", "validation", "test"):
        size = parent.get(schema.DATA_SIZE_PARAM.format(split=split))
        if size is not None:
            sizes[split] = int(size)
    return {
        "study": study.study_name,
        "trial": trial.number,
        "value": trial.values[0],
        "metric": str(cfg.study.metric),
        "direction": str(cfg.study.direction),
        "is_best": best is not None and best.number == trial.number,
        "evaluations": evaluations,
        "params": dict(trial.params),
        "method": (
            params.get(schema.METHOD_PARAM)
            or trial.params.get(schema.METHOD_PARAM)
            or str(cfg.peft.method)
        ),
        "merged": merged,
        "peft_type": peft_type,
        "base_model": base_model_id(
            params.get(schema.MODEL_PATH_PARAM) or str(cfg.model.name_or_path),
            cfg.model.get("hub_id"),
        ),
        "model_name": params.get(schema.MODEL_PARAM) or str(cfg.model.name),
        "data": {
            "name": str(data.name),
            "source": source,
            "sizes": sizes,
            "hub_id": str(data.path) if target.endswith("hub_dataset") else None,
        },
        "labels": label_names,
    }


def _register(
    tracker: Tracker | None, run_id: str | None, folder: Path, name: str, cfg: DictConfig
) -> str:
    """Log the folder as an MLflow model to the trial's run and register it as a new version.

    Each version has artifacts of its own (``model-<time>-<id>/``, never written again): a
    second export of the same run (merged after separate, say) is another folder, not files
    laid over the first version's."""
    from mlflow.exceptions import MlflowException

    if tracker is None or not run_id:
        raise ConfigError(
            "export.register",
            mask(
                f"the study's MLflow runs are not in '{cfg.tracking.uri}': set tracking.uri to the "
                "store the sweep used"
            ),
        )
    try:
        with tempfile.TemporaryDirectory(prefix="harness-register-") as scratch:
            model = save_mlflow_model(folder, Path(scratch) / "model", int(cfg.data.max_length))
            path = (
                f"{schema.MODEL_ARTIFACT}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
            )
            return tracker.register_model(run_id, model, name, path)
    except MlflowException as exc:
        raise ConfigError("export.register", mask(f"MLflow refused: {first_line(exc)}")) from None
