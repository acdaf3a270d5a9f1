"""The fine-tune's checkpoint folder (harness.train.checkpoints.CheckpointStore): checkpoints by
number, written under .partial, committed, discarded, removed; ``best`` a link. It knows no
study: which numbers stay is tests/study/test_retention.py's."""

from __future__ import annotations

import json

from harness.train.checkpoints import CheckpointStore


def test_a_checkpoint_is_written_partial_then_committed(tmp_path):
    store = CheckpointStore(tmp_path, label="run")
    folder = store.partial(3)  # emptied; the checkpoint's writer makes it
    assert folder == tmp_path / ".partial" / "run-3" and not folder.exists()
    folder.mkdir()
    (folder / "weights").write_text("w")
    path = store.commit(3, {"trial": 3, "value": 0.5})
    assert path == store.path(3) == tmp_path / "checkpoints" / "run-3"
    assert json.loads((path / "trial.json").read_text()) == {"trial": 3, "value": 0.5}
    assert store.committed() == [3] and store.partials() == []
    assert store.number_of(path) == 3 and store.number_of(tmp_path / "run-3") is None


def test_discard_remove_and_the_best_link(tmp_path):
    store = CheckpointStore(tmp_path)
    for n in (1, 2):
        store.partial(n).mkdir()
        store.commit(n, {})
    store.partial(4).mkdir()
    store.discard(4)
    assert store.partials() == []
    assert store.best_path() is None
    store.link_best(store.path(2).relative_to(tmp_path))
    assert store.best_path().resolve() == store.path(2).resolve()
    store.remove(1)
    assert store.committed() == [2]
    (tmp_path / "checkpoints" / "other-5").mkdir()  # another label's folder: not counted
    assert store.committed() == [2]
