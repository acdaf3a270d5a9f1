"""Where labelled text comes from. Each source returns a raw ``datasets.DatasetDict``.

Sources are named in ``conf/data/*.yaml`` by ``source._target_``; :mod:`harness.data.labelled`
turns whatever they return into labelled, split, capped data.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock

from harness.base.errors import ConfigError, first_line
from harness.data.vader_files import read_vader

if TYPE_CHECKING:
    from datasets import DatasetDict

log = logging.getLogger(__name__)

# TSV as GLUE and most corpora write it: tab-separated, no quoting (a quote is a character of
# the text; read with CSV quoting, a text starting with a quote swallowed the next lines).
_FILE_BUILDERS: dict[str, tuple[str, dict[str, object]]] = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t", "quoting": csv.QUOTE_NONE}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
}
VADER_LABELS = ["negative", "neutral", "positive"]
VADER_CORPORA = ("tweets", "movieReviewSnippets", "amazonReviewSnippets", "nytEditorialSnippets")


def local_files(
    train_file: str, validation_file: str | None = None, test_file: str | None = None
) -> DatasetDict:
    """Local csv / tsv / json / jsonl / parquet files (all of one format)."""
    from datasets import load_dataset

    given = {"train": train_file, "validation": validation_file, "test": test_file}
    files = {split: f for split, f in given.items() if f}
    builder: tuple[str, dict[str, object]] | None = None
    for split, name in files.items():
        field = f"data.{split}_file"
        path = Path(name).expanduser()
        if not path.is_file():
            raise ConfigError(field, f"file '{name}' does not exist")
        suffix = path.suffix.lower()
        if suffix not in _FILE_BUILDERS:
            raise ConfigError(
                field,
                f"'{name}' has an unsupported extension '{suffix}' "
                f"(use one of {', '.join(_FILE_BUILDERS)})",
            )
        if builder is not None and _FILE_BUILDERS[suffix] != builder:
            raise ConfigError(field, f"'{name}' is not the same format as data.train_file")
        builder = _FILE_BUILDERS[suffix]
        if builder[0] != "parquet":
            _check_utf8(path, field, name)
        if not _has_rows(path, builder[0]):
            raise ConfigError(field, f"'{name}' has no data rows")
        files[split] = str(path.resolve())
    assert builder is not None  # data.train_file is always given
    kind, options = builder
    try:
        loaded: DatasetDict = load_dataset(kind, data_files=files, **options)
        return loaded
    except Exception as exc:  # datasets raises many types for unreadable files
        # datasets wraps the reader's error (e.g. "Expected 2 fields in line 6")
        cause: BaseException = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        raise ConfigError(
            "data.train_file",
            f"could not read {files}: {exc}"
            + (f" ({first_line(cause)})" if cause is not exc else ""),
        ) from exc


def _check_utf8(path: Path, field: str, name: str) -> None:
    """Text files must be UTF-8 (datasets' readers fail deep inside on anything else)."""
    import codecs

    decoder, offset, line = codecs.getincrementaldecoder("utf-8")(), 0, 1
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                where = offset + exc.start
                line += chunk[: exc.start].count(b"\n")
                raise ConfigError(
                    field,
                    f"'{name}' is not UTF-8 text (byte "
                    f"0x{chunk[exc.start]:02x} at line {line}, offset "
                    f"{where}): save it as UTF-8 (e.g. iconv -f latin1 "
                    f"-t utf-8)",
                ) from None
            offset += len(chunk)
            line += chunk.count(b"\n")


def _has_rows(path: Path, kind: str) -> bool:
    """Whether a data file has at least one row (a header alone is none)."""
    if kind == "parquet":
        import pyarrow.parquet as pq

        return bool(pq.ParquetFile(path).metadata.num_rows > 0)
    with path.open("rb") as handle:
        lines = (line for line in handle if line.strip())
        first = next(lines, None)
        if kind == "csv":  # csv and tsv: the first line is the header
            return first is not None and next(lines, None) is not None
        return first is not None and first.strip() not in (b"[]", b"{}")


def hub_dataset(
    path: str, config_name: str | None = None, revision: str | None = None
) -> DatasetDict:
    """A dataset from the Hugging Face hub by name, through ``datasets.load_dataset``."""
    from datasets import DatasetDict, load_dataset

    try:
        loaded = load_dataset(path, config_name, revision=revision)
    except Exception as exc:
        raise ConfigError(
            "data.path", f"could not load dataset '{path}' from the hub: {exc}"
        ) from exc
    if not isinstance(loaded, DatasetDict):
        raise ConfigError("data.path", f"'{path}' did not load as a set of named splits")
    return loaded


def vader_ground_truth(
    cache_dir: str,
    corpus: str = "tweets",
    version: str = "3.3.2",
    negative_below: float = -0.5,
    positive_above: float = 0.5,
    validation_size: float = 0.15,
    test_size: float = 0.15,
    seed: int = 42,
) -> DatasetDict:
    """A VADER ground truth (Hutto & Gilbert, ICWSM-14), labelled and split.

    ``corpus``: tweets (4,200), movieReviewSnippets (10,605), amazonReviewSnippets (3,708) or
    nytEditorialSnippets (5,190) texts, each with the mean rating of about 20 human raters on
    -4 … +4, read from the ``vaderSentiment`` source distribution (fetched once with pip, through
    whatever index pip is configured with). Labels: negative (< ``negative_below``), neutral,
    positive (> ``positive_above``). Stratified, seeded train / validation / test splits are
    saved under ``cache_dir`` and reused.
    """
    from datasets import load_from_disk

    if corpus not in VADER_CORPORA:
        raise ConfigError(
            "data.source.corpus", f"must be one of {', '.join(VADER_CORPORA)}, got {corpus!r}"
        )
    if not negative_below < positive_above:
        raise ConfigError("data.source.negative_below", "must be below positive_above")
    if not (0 < validation_size < 1 and 0 < test_size < 1 and validation_size + test_size < 1):
        raise ConfigError(
            "data.source.validation_size",
            "validation_size and test_size must be in (0, 1) with a sum below 1",
        )
    settings = dict(
        version=version,
        negative_below=negative_below,
        positive_above=positive_above,
        validation_size=validation_size,
        test_size=test_size,
        seed=seed,
        format=1,
        **({} if corpus == "tweets" else {"corpus": corpus}),  # the tweets' cache key as before
    )
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(cache_dir).expanduser()
    target = root / f"vader-{corpus}-{key}"
    if (target / "dataset_dict.json").is_file():
        cached: DatasetDict = load_from_disk(str(target))
        return cached
    # Several processes (study.workers, or commands started together) on an empty cache: one
    # fetches and prepares, the others wait for it and read what it wrote.
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".vader-{corpus}-{key}.lock")):
        if (target / "dataset_dict.json").is_file():
            ready: DatasetDict = load_from_disk(str(target))
            return ready
        return _prepare_vader(
            root,
            target,
            corpus,
            version,
            negative_below,
            positive_above,
            validation_size,
            test_size,
            seed,
        )


# The VADER tweets (conf/data/vader.yaml): vader_ground_truth with corpus ``tweets``
vader_tweets = functools.partial(vader_ground_truth, corpus="tweets")


def _prepare_vader(
    root: Path,
    target: Path,
    corpus: str,
    version: str,
    negative_below: float,
    positive_above: float,
    validation_size: float,
    test_size: float,
    seed: int,
) -> DatasetDict:
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, load_from_disk

    rows = read_vader(root, version, corpus)
    labels = [0 if r < negative_below else 2 if r > positive_above else 1 for _, r, _ in rows]
    features = Features(
        id=Value("string"),
        text=Value("string"),
        rating=Value("float32"),
        label=ClassLabel(names=VADER_LABELS),
    )
    full = Dataset.from_dict(
        {
            "id": [i for i, _, _ in rows],
            "text": [t for _, _, t in rows],
            "rating": [r for _, r, _ in rows],
            "label": labels,
        },
        features=features,
    )
    held_out = full.train_test_split(
        test_size=validation_size + test_size, stratify_by_column="label", seed=seed
    )
    val_test = held_out["test"].train_test_split(
        test_size=test_size / (validation_size + test_size), stratify_by_column="label", seed=seed
    )
    splits = DatasetDict(
        train=held_out["train"], validation=val_test["train"], test=val_test["test"]
    )
    # Write beside the target, then rename: a killed run never leaves a half-written cache.
    tmp = Path(tempfile.mkdtemp(prefix=".vader-", dir=root))
    splits.save_to_disk(str(tmp / "d"))
    shutil.rmtree(target, ignore_errors=True)
    (tmp / "d").rename(target)
    shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "VADER %s prepared: %s (cached in %s)",
        corpus,
        ", ".join(f"{k} {len(v)}" for k, v in splits.items()),
        target,
    )
    prepared: DatasetDict = load_from_disk(str(target))
    return prepared
