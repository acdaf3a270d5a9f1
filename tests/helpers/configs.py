"""Composed configs and the small labelled files the quick sweeps run on.

Nothing here downloads: the small files are written by the helpers themselves.
"""

from __future__ import annotations

import copy
import csv
import functools
import random
from pathlib import Path

import harness  # noqa: F401  (registers the config schemas and resolvers)
from harness.config.space_overrides import prepare, replace_entries

CONF = Path(__file__).resolve().parents[2] / "conf"

POSITIVE = ["love", "great", "happy", "wonderful", "awesome", "excellent", "fun", "best"]
NEGATIVE = ["hate", "awful", "sad", "terrible", "worst", "boring", "angry", "bad"]
NEUTRAL = ["table", "tuesday", "blue", "train", "paper", "window", "meeting", "street"]
FILLER = ["the", "this", "my", "day", "was", "is", "so", "really", "today", "movie", "a"]


def compose(overrides: list[str]):
    """The config ``python -m harness.sweep OVERRIDES`` would run with (search-space entries
    given with a type replaced, as the command line does). A fresh copy each call; the same
    overrides are composed once per process (a test often composes its config twice: to run
    the study and to read it back)."""
    return copy.deepcopy(_composed(tuple(overrides)))


@functools.lru_cache(maxsize=64)
def _composed(overrides: tuple[str, ...]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    prepared = prepare(list(overrides))
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=prepared)
    replace_entries(cfg, prepared)
    return cfg


def write_sentiment_csv(path: Path, rows: int, seed: int) -> Path:
    """Short texts whose label follows from a sentiment word (a tiny model can learn it)."""
    rng = random.Random(seed)
    words = {"positive": POSITIVE, "negative": NEGATIVE, "neutral": NEUTRAL}
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(rows):
            label = ("negative", "neutral", "positive")[i % 3]
            tokens = rng.sample(FILLER, rng.randint(2, 6)) + [rng.choice(words[label])]
            rng.shuffle(tokens)
            writer.writerow([" ".join(tokens), label])
    return path


def overrides_in(tmp_path: Path, tiny_model_dir: Path, sentiment_files: dict) -> list[str]:
    """The quick sweep's overrides with every store under ``tmp_path``."""
    return [
        "+sweep=lora",
        f"model.name_or_path={tiny_model_dir}",
        "model.name=tiny",
        "data=files",
        f"data.train_file={sentiment_files['train']}",
        f"data.validation_file={sentiment_files['validation']}",
        "data.max_train_samples=null",
        f"study.storage=sqlite:///{tmp_path}/sweeps/optuna.db",
        f"study.output_dir={tmp_path}/sweeps/study",
        f"tracking.uri=sqlite:///{tmp_path}/mlruns/mlflow.db",
        f"tracking.artifact_location={tmp_path}/mlruns",
        "train.num_train_epochs=4",
        "train.evals_per_epoch=2",
        "train.per_device_train_batch_size=16",
        # keys of the search space hold dots: change an entry with a dict literal. The random
        # tiny model needs high rates to learn anything in 60 steps (trial values then differ).
        # At those rates it needs some warm-up (searched, as the lora sweep once did).
        "++search_space={train.learning_rate: {low: 1.0e-2, high: 5.0e-2}, "
        "train.warmup_steps: {type: float, low: 0.0, high: 0.1}}",
        "display.progress=false",
        # the final stage (re-runs of the best configurations) only where a test asks for it,
        # trained in the sweep's own process (helpers: tests/study/test_final_helpers.py)
        "final.seeds=0",
        "final.workers=1",
        # the sweep's recipe (trial 0, and the final stage's baseline) only where a test asks
        # for it: its learning rate is outside the tiny model's range above
        "recipe=null",
        # the mechanics these tests check were written against the median pruner (the sweeps'
        # own successive halving runs in test_samplers_pruners and the slow suite)
        "pruner=median",
    ]
