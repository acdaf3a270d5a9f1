"""Reload an exported model with plain transformers and score it on the study's validation split.

    .venv/bin/python benchmarks/check_export.py +sweep=lora        # the sweep's own overrides

Prints the accuracy next to the value the exported trial recorded (metrics.json).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

import harness  # noqa: F401  (resolvers)
from harness.config.command import CONF
from harness.data import load_labelled_data
from harness.export.predict import accuracy_on


def main(overrides: list[str]) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    folder = Path(cfg.export.dir)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    data = load_labelled_data(cfg.data)
    validation = data.splits["validation"]
    texts, labels = validation[cfg.data.text_column], validation["label"]
    start = time.perf_counter()
    accuracy = accuracy_on(model, tokenizer, texts, labels, int(cfg.data.max_length))
    recorded = json.loads((folder / "metrics.json").read_text())
    print(
        f"{folder}: trial {recorded['trial']}: validation accuracy with plain transformers "
        f"{accuracy:.4f} ({len(texts)} texts, {time.perf_counter() - start:.1f} s); "
        f"recorded by the trial {recorded['accuracy']:.4f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (the sweep's own)")
    main(parser.parse_args().overrides)
