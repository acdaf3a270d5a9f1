"""The VADER ground-truth files (Hutto & Gilbert, ICWSM-14): fetched once from the
``vaderSentiment`` source distribution with pip, read as (id, mean rating, text) rows."""

from __future__ import annotations

import html
import logging
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from harness.base.errors import ConfigError

log = logging.getLogger(__name__)


def read_vader(root: Path, version: str, corpus: str) -> list[tuple[str, float, str]]:
    """Rows (id, mean rating, text) of <corpus>_GroundTruth.txt, fetched once into ``root``."""
    raw = root / f"vaderSentiment-{version}" / f"{corpus}_GroundTruth.txt"
    if not raw.is_file():
        _fetch_vader_ground_truth(raw, version)
    data = raw.read_bytes()
    text = data.decode("utf-8", errors="replace")
    if "\ufffd" in text:
        log.warning("%s: some bytes are not UTF-8; they were replaced with U+FFFD", raw)
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        if len(parts) != 3:
            raise ConfigError(str(raw), f"line {number} is not 'id<TAB>rating<TAB>text'")
        rows.append((parts[0], float(parts[1]), html.unescape(parts[2]).strip()))
    return rows


def _fetch_vader_ground_truth(dest: Path, version: str) -> None:
    log.info("fetching the VADER ground truth: pip download vaderSentiment==%s (sdist)", version)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            "-q",
            f"vaderSentiment=={version}",
            "-d",
            tmp,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        sdists = list(Path(tmp).glob("vaderSentiment-*.tar.gz")) + list(
            Path(tmp).glob("vadersentiment-*.tar.gz")
        )
        if done.returncode != 0 or not sdists:
            last = (done.stderr.strip().splitlines() or ["no source distribution downloaded"])[-1]
            raise ConfigError(
                "data.source", f"could not fetch vaderSentiment=={version} with pip: {last}"
            )
        with tarfile.open(sdists[0]) as sdist:
            inner = next(
                (m for m in sdist.getmembers() if m.name.endswith("hutto_ICWSM_2014.tar.gz")),
                None,
            )
            if inner is None:
                raise ConfigError(
                    "data.source", f"vaderSentiment=={version} does not ship hutto_ICWSM_2014"
                )
            with tarfile.open(fileobj=sdist.extractfile(inner)) as ground_truth:
                member = next(m for m in ground_truth.getmembers() if m.name.endswith(dest.name))
                handle = ground_truth.extractfile(member)
                if handle is None:  # a folder or a link by that name
                    raise ConfigError(
                        "data.source", f"vaderSentiment=={version}: {member.name} is not a file"
                    )
                payload = handle.read()
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".part")
    partial.write_bytes(payload)
    partial.rename(dest)
