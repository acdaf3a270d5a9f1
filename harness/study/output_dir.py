"""One study per ``study.output_dir``: the folder says which study's checkpoints it holds, so
two studies never share (and so delete, or ship) each other's checkpoints.

The mark (``.harness-study.json``) binds the folder to the study's identity, the uid its MLflow
parent run carries too (:func:`harness.study.storage.identity`), not its name alone: a study of
the same name in another storage (or made again after the first was deleted) is another study.
A folder marked by an older version (the name only) is adopted by the study of that name, and
bound to its uid from then on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from optuna.storages import RDBStorage

from harness.base.errors import ConfigError
from harness.base.files import storage_file
from harness.base.secrets import mask
from harness.base.storages import kind, open_url
from harness.records import schema

OWNER_FILE = ".harness-study.json"
_ANY = object()  # a uid not checked (the name only)


def check_owner(output_dir: str, study_name: str, storage: str | None = None) -> None:
    """A ConfigError when ``output_dir`` belongs to another study (nothing is written): one of
    another name, or, ``storage`` given, one of the same name that is not the study ``storage``
    holds under that name (another uid; none there yet: a new study, a new uid)."""
    mark = _mark(Path(output_dir))
    if mark is None:
        return
    _check(output_dir, mark, study_name)
    if storage is not None and mark.get("uid"):
        known, uid = _stored_uid(str(storage), study_name)
        if known:
            _check(output_dir, mark, study_name, uid, str(storage))


def claim(output_dir: str, study_name: str, uid: str, storage: str = "") -> None:
    """Mark ``output_dir`` as the study's (``uid``: its identity; ``storage``: where it is, for
    the message that refuses another study). A folder from before the mark is adopted; one
    marked with the name only (an older version) is adopted and bound to ``uid``."""
    folder = Path(output_dir)
    mark = _mark(folder)
    if mark is not None:
        _check(output_dir, mark, study_name, uid, storage)
        if mark.get("uid") == uid:
            return
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{OWNER_FILE}.{os.getpid()}.part"
    partial.write_text(
        json.dumps({"study": study_name, "uid": uid, "storage": mask(str(storage))}) + "\n"
    )
    try:
        if mark is None:  # not over a mark another study wrote meanwhile
            os.link(partial, folder / OWNER_FILE)
        else:
            partial.replace(folder / OWNER_FILE)
    except FileExistsError:
        pass
    except OSError:  # no hard links on this file system
        partial.replace(folder / OWNER_FILE)
    finally:
        partial.unlink(missing_ok=True)
    mark = _mark(folder)
    if mark is not None:  # written by another study at the same moment: its folder
        _check(output_dir, mark, study_name, uid, storage)


def _check(
    output_dir: str,
    mark: dict[str, object],
    study_name: str,
    uid: str | None | object = _ANY,
    storage: str = "",
) -> None:
    """Refuse the folder ``mark`` describes to a study other than ``study_name`` of uid ``uid``
    (None: a study without one yet; not given: the name only), which is in ``storage``."""
    owner = str(mark["study"])
    if owner != study_name:
        raise ConfigError(
            "study.output_dir",
            f"'{output_dir}' holds the checkpoints of study "
            f"'{owner}': give study '{study_name}' a folder "
            "of its own (study.output_dir=...)",
        )
    bound = mark.get("uid")
    if not bound or uid is _ANY or uid == bound:
        return
    theirs, where = mark.get("storage"), mask(str(storage)) or "this storage"
    detail = (
        f"the one in {theirs}, not the one in {where}"
        if theirs and theirs != where
        else f"an earlier study of that name, not the one now in {where}"
    )
    raise ConfigError(
        "study.output_dir",
        f"'{output_dir}' holds the checkpoints of another "
        f"study named '{study_name}' ({detail}): give this "
        "study a folder of its own (study.output_dir=...)",
    )


def _stored_uid(storage: str, study_name: str) -> tuple[bool, str | None]:
    """``(known, uid)`` of the study ``study_name`` in ``storage``, read without creating
    anything (uid None: no such study there yet, or one without a uid); known False where the
    storage cannot be read here (then checked once the study is open, :func:`claim`)."""
    path = storage_file(storage)
    if path is not None and not path.exists():
        return True, None
    try:  # an RDB as it is (no table created, no schema check); a journal file or a proxy
        opened = (
            RDBStorage(storage, skip_compatibility_check=True, skip_table_creation=True)
            if kind(storage) == "rdb"
            else open_url(storage, create=False)
        )
    except Exception:
        return False, None
    try:
        study_id = opened.get_study_id_from_name(study_name)
        uid = opened.get_study_user_attrs(study_id).get(schema.STUDY_UID_ATTR)
        return True, str(uid) if uid else None
    except KeyError:
        return True, None
    except Exception:
        return False, None
    finally:
        if isinstance(opened, RDBStorage):
            opened.remove_session()
            opened.engine.dispose()


def _mark(folder: Path) -> dict[str, object] | None:
    try:
        mark = json.loads((folder / OWNER_FILE).read_text())
        return mark if isinstance(mark, dict) and isinstance(mark.get("study"), str) else None
    except (OSError, ValueError):
        return None
