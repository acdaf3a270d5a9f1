"""The embedded data's cache: processes that start together on an empty cache prepare it once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.data.sources import vader_tweets

pytestmark = pytest.mark.integration  # worker processes on one cache

ROOT = Path(__file__).resolve().parents[2]
# each process waits for the same moment, then loads the data (so that they race for real)
SCRIPT = """
import logging, sys, time
logging.basicConfig(level=logging.INFO, format="%(message)s")
from harness.data.sources import vader_tweets
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
print(len(vader_tweets(sys.argv[1])["train"]))
"""


@pytest.fixture(scope="module")
def embedded_cache() -> Path:
    """The user's embedded-data cache, with the ground truth fetched (once, by pip)."""
    folder = Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "harness"))
    vader_tweets(str(folder))
    return folder


def test_workers_starting_together_on_an_empty_cache_prepare_it_once(tmp_path, embedded_cache):
    cache = tmp_path / "cache"
    # the ground-truth file is there (no download in this test); the prepared splits are not
    raw = next(Path(embedded_cache).glob("vaderSentiment-*"))
    shutil.copytree(raw, cache / raw.name)
    start_at = str(time.time() + 8)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(cache), start_at],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], [err for _, err in results]
    assert [out.split() for out, _ in results] == [["2940"]] * 3
    logs = "".join(err for _, err in results)
    assert logs.count("VADER tweets prepared") == 1, logs
    assert len(list(cache.glob("vader-tweets-*/dataset_dict.json"))) == 1
    assert not list(cache.glob(".vader-*")) or all(
        p.suffix == ".lock" for p in cache.glob(".vader-*")
    )
