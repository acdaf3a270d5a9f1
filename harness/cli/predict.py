"""``python -m harness.predict FOLDER "text" … [--file texts.txt]``: label and probability per
text, from a folder ``python -m harness.export`` wrote (or any checkpoint the harness saved)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from harness.base.progress import configure_logging
from harness.export.predict import predict
from harness.train.ensemble import is_ensemble, load_classifier


def _max_length(folder: Path) -> int:
    """The max_length the model was trained with (the export's config.yaml), else 128."""
    config = folder / "config.yaml"
    if config.is_file():
        try:
            return int(yaml.safe_load(config.read_text())["data"]["max_length"])
        except Exception:
            pass
    return 128


def _texts(args: argparse.Namespace) -> list[str]:
    texts = list(args.texts)
    if args.file:
        lines = (
            sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
        ).splitlines()
        texts += [line for line in lines if line.strip()]
    return texts


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness.predict",
        description="Classify texts with an exported model: one line per text with the "
        "predicted label and its probability.",
        epilog="Example: python -m harness.predict sweeps/minilm-vader-lora/export "
        '"what a great day" "this is awful"   |   --file tweets.txt --json',
    )
    p.add_argument(
        "folder", help="a folder written by python -m harness.export (or a harness checkpoint)"
    )
    p.add_argument("texts", nargs="*", help="texts to classify")
    p.add_argument("--file", "-f", help="a file of texts, one per line ('-': standard input)")
    p.add_argument("--top-k", type=int, default=1, help="labels shown per text (default 1)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="tokens per text (default: the model's training max_length)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    folder = Path(args.folder)
    if not (folder / "config.json").is_file() and not is_ensemble(folder):
        print(
            f"error: {folder}: not a model folder (no config.json or ensemble.json); export "
            "one with "
            "python -m harness.export",
            file=sys.stderr,
        )
        return 2
    try:
        texts = _texts(args)
    except OSError as exc:
        print(f"error: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if not texts:
        print("error: no texts: give them as arguments or with --file", file=sys.stderr)
        return 2
    if args.top_k < 1 or args.batch_size < 1:
        print("error: --top-k and --batch-size must be at least 1", file=sys.stderr)
        return 2
    configure_logging()
    model, tokenizer = load_classifier(folder)
    predictions = predict(
        model, tokenizer, texts, args.max_length or _max_length(folder), args.batch_size, args.top_k
    )
    for p in predictions:
        if args.json:
            print(
                json.dumps(
                    {
                        "text": p.text,
                        "label": p.label,
                        "probability": p.probability,
                        "top": [{"label": n, "probability": v} for n, v in p.top],
                    }
                )
            )
        else:
            others = "".join(f"  {n} {v:.3f}" for n, v in p.top[1:])
            print(f"{p.label}\t{p.probability:.3f}{others}\t{p.text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
