"""Which model an export takes: the final stage's chosen seed (its configuration's best mean),
else the best trial, or the trial ``export.trial`` names; and where its checkpoint is."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig
from optuna.trial import FrozenTrial, TrialState

from harness.base.errors import ConfigError
from harness.records import final, schema, trials
from harness.records.final import FinalRecord
from harness.train.checkpoints import CheckpointStore

if TYPE_CHECKING:
    import optuna

    from harness.records.tracker import Tracker


@dataclass
class Choice:
    trial: FrozenTrial  # the search's trial (its params and config)
    run_id: str | None  # the run whose checkpoint and metrics are exported
    value: float
    seed: int | None = None  # a final-stage seed: final-<trial>-seed<k>
    local: Path | None = None  # its local checkpoint folder
    record: FinalRecord = field(default_factory=dict)  # the final stage's record
    soup: bool = False  # the final stage's soup (final/soup): local only

    def final_figures(self) -> dict[str, Any]:  # Any: JSON figures for metrics.json
        """metrics.json's account of the final stage (empty for a plain trial)."""
        if self.seed is None:
            return {}
        config = self.record["configs"][str(self.record["trial"])]
        test = self.record.get("test") or {}
        out = {
            "seed": self.seed,
            "final_val_mean": config["mean"],
            "final_val_std": config["sd"],
            "final_seeds": self.record["seeds"],
        }
        if test.get("values"):
            out.update(
                test=test["values"].get(str(self.seed)),
                final_test_mean=test["mean"],
                final_test_std=test["sd"],
            )
        else:
            out["test"] = test.get("none", "not scored")
        for kind in ("ensemble", "soup"):  # what the export holds instead of the seed alone
            combined = self.record.get(kind)
            if not combined:
                continue
            out["shipped"] = kind
            out[f"{kind}_val"] = combined["val"]
            if (combined.get("test") or {}).get("value") is not None:
                out[f"{kind}_test"] = combined["test"]["value"]
            out[f"{kind}_members"] = [
                m
                if isinstance(m, str)
                else {"name": m["name"], "weight": m["weight"], "val": m["val"]}
                for m in combined["members"]
            ]
        return out


def chosen_export(study: optuna.Study, number: int | None) -> Choice:
    record = final.record(study) or {}
    if number is None and record.get("run_id"):
        trial = study.trials[int(record["trial"])]
        # a soup is a local checkpoint only: no run holds it (its ingredients' runs do)
        shipped = record.get("soup") or {"val": record["seed_value"], **record}
        return Choice(
            trial,
            record["run_id"],
            float(shipped["val"]),
            int(record["seed"]),
            Path(shipped["checkpoint"]),
            record,
            soup=bool(record.get("soup")),
        )
    trial = _chosen_trial(study, number)
    return Choice(trial, trial.user_attrs.get(schema.RUN_ID_ATTR), trials.study_value(trial))


def _chosen_trial(study: optuna.Study, number: int | None) -> FrozenTrial:
    if number is None:
        best = trials.best_trial(study)
        if best is None:
            raise ConfigError(
                "study.name", f"study '{study.study_name}' has no completed trial to export yet"
            )
        return best
    found = [t for t in study.get_trials(deepcopy=False) if t.number == int(number)]
    if not found:
        raise ConfigError(
            "export.trial",
            f"no trial {number} in study '{study.study_name}' (it has {len(study.trials)})",
        )
    if found[0].state != TrialState.COMPLETE:
        raise ConfigError(
            "export.trial",
            f"trial {number} is {found[0].state.name}: only a completed trial has a checkpoint",
        )
    return found[0]


def other_run(folder: Path, run_id: str | None) -> str | None:
    """The other run whose checkpoint ``folder`` holds (its ``trial.json``) where it should hold
    run ``run_id``'s (None: it is that run's, or says no run: an older checkpoint, trusted)."""
    recorded = _trial_info(folder).get(schema.RUN_ID_ATTR)
    return str(recorded) if run_id and recorded and recorded != run_id else None


def checkpoint_of(cfg: DictConfig, choice: Choice, tracker: Tracker | None, download: Path) -> Path:
    """The chosen checkpoint folder: the local one if kept, else the MLflow run's artifact.

    A local checkpoint is the trial's when its ``trial.json`` names the trial and its MLflow
    run: the number alone may be another study's trial (one of the same name in another
    storage, writing to the same folder)."""
    trial, run_id = choice.trial, choice.run_id
    store = CheckpointStore(str(cfg.study.output_dir))
    local = store.root / choice.local if choice.local else store.path(trial.number)
    theirs = None
    if _trial_info(local).get("trial") == trial.number:
        theirs = None if choice.soup else other_run(local, run_id)  # a soup: its first seed's
        if theirs is None:
            return local
    if choice.soup:
        raise ConfigError(
            "export.trial",
            f"the shipped soup is kept in {local} only, and it is "
            "not there: export where the final stage ran, or a "
            "single trial with export.trial=N",
        )
    if tracker is not None and run_id:
        try:
            path = tracker.download(run_id, schema.CHECKPOINT_ARTIFACT, download)
            if (path / "labels.json").is_file():
                return path
        except Exception:  # removed (not among the kept ones) or unreachable: said below
            pass
    if theirs is not None:
        raise ConfigError(
            "export.trial",
            f"{local} holds the checkpoint of another run "
            f"({theirs}), not of trial {trial.number}'s run "
            f"({run_id}), which has none in MLflow: another "
            "study wrote to this folder (give each study its own "
            "study.output_dir)",
        )
    raise ConfigError(
        "export.trial",
        f"trial {trial.number}'s checkpoint was not kept (not in "
        f"{local}, not in its MLflow run): checkpoints.keep keeps "
        "the best trials' only; export the best trial",
    )


def _trial_info(folder: Path) -> dict[str, Any]:  # Any: trial.json's JSON values
    try:
        info = json.loads((folder / "trial.json").read_text())
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}
