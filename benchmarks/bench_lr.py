"""Learning-rate calibration: validation curves of each method at several learning rates, at a
sweep's per-trial budget, on the embedded model and data (or any data=… overrides).

    .venv/bin/python benchmarks/bench_lr.py --method lora --lrs 3e-3,1e-2 [key=value ...]
    .venv/bin/python benchmarks/bench_lr.py --method lora --lrs 6e-3 --precisions no,bf16
    .venv/bin/python benchmarks/bench_lr.py ... --out rows.jsonl   # rows with their provenance

One plain fine-tune per learning rate (no study, no MLflow), the other settings as the sweep
composes them. Prints one Markdown row per run: the accuracy after each evaluation (the curve
against steps), the best, the majority-class accuracy of the validation split, and the time.
This is where the ranges in conf/sweep/*.yaml come from.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from provenance import append_row

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", required=True, help="a sweep name (conf/sweep/NAME.yaml)")
    parser.add_argument("--lrs", required=True, help="comma-separated learning rates")
    parser.add_argument(
        "--precisions", default="no", help="train.mixed_precision values to compare (e.g. no,bf16)"
    )
    parser.add_argument("--out", type=Path, help="append every row (with provenance) to this JSONL")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides")
    args = parser.parse_args()

    from hydra import compose, initialize_config_dir

    from harness.base.progress import configure_logging
    from harness.study import prepare_study, validate_config
    from harness.train.callbacks import OnEvaluate
    from harness.train.finetune import finetune

    configure_logging()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"+sweep={args.method}", *args.overrides])
    prepared = prepare_study(cfg, validate_config(cfg))
    labels = prepared.datasets["validation"]["label"]
    majority = Counter(labels).most_common(1)[0][1] / len(labels)
    print(
        "| method | lr | precision | curve (accuracy after each evaluation) | best | majority "
        "| s | samples/s (evaluations included) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    runs = [(float(lr), p) for lr in args.lrs.split(",") for p in args.precisions.split(",")]
    for lr, precision in runs:
        trial_cfg = prepared.space.apply(
            cfg, {"train.learning_rate": lr, "train.mixed_precision": precision}
        )
        curve: list[float] = []
        start = time.perf_counter()
        result = finetune(
            trial_cfg,
            prepared.base,
            prepared.datasets,
            prepared.metrics,
            callbacks=[OnEvaluate(lambda i, m, c=curve: c.append(m["eval_accuracy"]))],
        )
        wall = time.perf_counter() - start
        shown = " ".join(f"{v:.3f}" for v in curve)
        speed = result.steps * int(cfg.train.per_device_train_batch_size) / result.train_runtime
        print(
            f"| {args.method} | {lr:g} | {precision} | {shown} | {result.value:.4f} | "
            f"{majority:.4f} | {wall:.0f} | {speed:.1f} |",
            flush=True,
        )
        if args.out:
            append_row(
                args.out,
                {
                    "method": args.method,
                    "lr": lr,
                    "precision": precision,
                    "overrides": args.overrides,
                    "curve": curve,
                    "best": result.value,
                    "majority": majority,
                    "steps": result.steps,
                    "wall": wall,
                    "samples_per_s": speed,
                },
            )


if __name__ == "__main__":
    main()
