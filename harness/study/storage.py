"""The study's Optuna storage: opened with heartbeats (an RDB, a journal file or a gRPC proxy,
:mod:`harness.base.storages`), and the study's identity in it (the settings that define its
trials, checked on resume)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial

from harness.base.errors import ConfigError, first_line
from harness.base.extras import missing_extra, needs
from harness.base.files import storage_file
from harness.base.secrets import mask
from harness.base.storages import open_url
from harness.records import schema, trials
from harness.records.lookup import build_tracker
from harness.study.lock import study_lock

# Config sections that define what a study's trials mean. Resuming a study with different
# values would mix incomparable trials, so it is refused. (n_trials, timeout, sampler, pruner,
# tracking, checkpoints and display may change between runs.)
FINGERPRINT_KEYS = (
    "model",
    "data",
    "peft",
    "train",
    "search_space",
    "method_space",
    "methods",
    "metrics",
    "metric_args",
)
FINGERPRINT_STUDY_KEYS = ("metric", "direction", "second_objective", "prune_metric")
# settings no trial trains differently by: the card's hub id; which evaluations run
# (train.evaluate_from: an evaluation changes nothing trained), so a study made before the
# option existed resumes, and a study can be resumed with every evaluation or with fewer; how
# dropout draws its masks on a CPU (train.cpu_dropout: other masks of the same distribution, as
# another seed's), so a study made with torch's resumes with the fast ones
NOT_FINGERPRINTED = {"model": ("hub_id",), "train": ("evaluate_from", "cpu_dropout")}


def open_storage(
    study_cfg: DictConfig, recovery: Callable[[optuna.Study, FrozenTrial], None] | None
) -> optuna.storages.BaseStorage:
    """Optuna's storage for ``study.storage`` (an RDB, a journal file or a gRPC proxy:
    :func:`harness.base.storages.open_url`), with a heartbeat per running trial (a trial whose
    heartbeat stops is failed and retried by ``recovery``)."""

    url = str(study_cfg.storage)
    path = storage_file(url)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                "study.storage", mask(f"cannot create the folder of '{url}': {exc.strerror or exc}")
            ) from None
    for attempt in (1, 2):  # two workers creating the tables at once: the second retries
        try:
            return open_url(
                url,
                heartbeat_interval=int(study_cfg.heartbeat_interval),
                grace_period=int(study_cfg.grace_period),
                stale_callback=recovery,
            )
        except ConfigError:
            raise
        except Exception as exc:
            extra = missing_extra(exc)
            if extra:
                raise needs("study.storage", mask(f"'{url}'"), extra) from None
            if attempt == 2 or isinstance(exc, ImportError | ConnectionError):
                raise ConfigError(
                    "study.storage", mask(f"cannot open '{url}': {first_line(exc)}")
                ) from None
            time.sleep(1.0)
    raise AssertionError("unreachable")


def init_stores(cfg: DictConfig) -> None:
    """Create the storage's and the tracking store's tables (before several workers start, so
    that they do not race to create them)."""
    build_tracker(cfg).check()
    storage = open_storage(cfg.study, None)
    if isinstance(storage, optuna.storages.RDBStorage):
        storage.remove_session()


def fingerprint(cfg: DictConfig) -> dict[str, str]:
    """The unresolved settings that define the study (the same on every machine)."""
    out: dict[str, str] = {}
    for key in FINGERPRINT_KEYS:
        node = cfg.get(key)
        container = OmegaConf.to_container(node, resolve=False) if node is not None else None
        for name in NOT_FINGERPRINTED.get(key, ()):
            if isinstance(container, dict):
                container.pop(name, None)
        out[key] = json.dumps(container, sort_keys=True)
    for key in FINGERPRINT_STUDY_KEYS:
        out[f"study.{key}"] = json.dumps(cfg.study.get(key))
    return out


def existing_study(
    storage: optuna.storages.BaseStorage, name: str, settings: dict[str, str]
) -> optuna.Study | None:
    """The study ``name`` when the storage has it (None otherwise); a ConfigError when it was
    made with other ``settings`` (its fingerprint)."""

    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return None
    study = optuna.load_study(study_name=name, storage=storage)
    stored = study.user_attrs.get(schema.FINGERPRINT_ATTR)
    if stored:
        changed = _diff(stored, settings)
        if changed:
            raise ConfigError(
                "study.name",
                f"study '{name}' exists with other settings ({'; '.join(changed[:4])}): resume "
                "it with its own settings, or start a new study with study.name=NEW_NAME",
            )
    return study


def _diff(stored: dict[str, str], current: dict[str, str]) -> list[str]:
    def flat(prefix: str, value: object, out: dict[str, object]) -> dict[str, object]:
        if isinstance(value, dict):
            for k, v in value.items():
                flat(f"{prefix}.{k}", v, out)
        else:
            out[prefix] = value
        return out

    old: dict[str, object] = {}
    new: dict[str, object] = {}
    for key in set(stored) | set(current):
        flat(key, json.loads(stored.get(key, "null")), old)
        flat(key, json.loads(current.get(key, "null")), new)
    return [
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]


def identity(study: optuna.Study) -> dict[str, str]:
    """The study's identity, as tags for its MLflow parent run: a uid stored with the study when
    it is first opened (under the study's lock: workers that open it together agree on one),
    its storage (password masked) and its id there."""
    if not study.user_attrs.get(schema.STUDY_UID_ATTR):  # a new study, or one from before
        # under the study's lock: workers opening a new study together all get the first uid
        # (the output folder and the parent run are bound to it)
        with study_lock(study._storage, study.study_name, "identity"):
            if not trials.stored_attrs(study).get(schema.STUDY_UID_ATTR):
                study.set_user_attr(schema.STUDY_UID_ATTR, uuid.uuid4().hex)
    uid = trials.stored_attrs(study)[schema.STUDY_UID_ATTR]
    url = getattr(study._storage, "url", None) or getattr(
        getattr(study._storage, "_backend", None), "url", ""
    )
    return {
        schema.STUDY_UID_TAG: str(uid),
        schema.STORAGE_TAG: mask(str(url)),
        schema.STUDY_ID_TAG: str(study._study_id),
    }
