"""Benchmark: every default sweep on the embedded model and data (or data=…), at its own budget.

    .venv/bin/python benchmarks/bench_methods.py [--trials N] [--methods full,lora,...]
        [--out rows.jsonl] [key=value ...]
    .venv/bin/python benchmarks/bench_methods.py data=amazon      # the second data set

Runs one study per sweep (studies `bench-<sweep>-<data>` in sweeps/bench.db, MLflow as
configured; --trials overrides every sweep's own study.n_trials), then scores the best trial's
checkpoint on the held-out test split, and prints a Markdown table: best validation accuracy
against the majority class of the validation split, test accuracy of the best trial, trainable
parameters, training steps and what pruning saved, wall time. ``--out`` appends each sweep's row
(with its provenance) to a JSON-lines file.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from provenance import append_row

ROOT = Path(__file__).resolve().parents[1]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--trials",
        type=int,
        default=None,
        help="trials per sweep (default: each sweep's own study.n_trials)",
    )
    parser.add_argument(
        "--methods",
        default="full,lora,prefix,prompt,ia3,methods",
        help="comma-separated sweeps to compare (conf/sweep/NAME.yaml)",
    )
    parser.add_argument("--out", type=Path, help="append every row (with provenance) to this JSONL")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for every sweep")
    args = parser.parse_args()

    import harness  # noqa: F401
    from harness.base.progress import configure_logging
    from harness.base.storages import load_study  # journal:// and grpc:// too
    from harness.data import load_labelled_data
    from harness.export.predict import accuracy_on
    from harness.records.compute import study_compute
    from harness.study import run_sweep
    from harness.train.checkpoints import load_checkpoint

    configure_logging()
    rows = []
    for method in args.methods.split(","):
        data = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("data=")), "vader")
        name = f"bench-{method}-{data}"
        trials = [f"study.n_trials={args.trials}"] if args.trials else []
        cfg = compose(
            [
                f"+sweep={method}",
                f"study.name={name}",
                *trials,
                "study.storage=sqlite:///sweeps/bench.db",
                *args.overrides,
            ]
        )
        start = time.perf_counter()
        summary = run_sweep(cfg)
        wall = time.perf_counter() - start
        print(summary.format(), flush=True)
        study = load_study(str(cfg.study.storage), name)
        compute = study_compute(study)
        labels = load_labelled_data(cfg.data).splits["validation"]["label"]
        majority = Counter(labels).most_common(1)[0][1] / len(labels)
        test_acc = trainable = ratio = picked = None
        if summary.best_number is not None and summary.best_checkpoint:
            best = study.best_trial
            trainable = best.user_attrs.get("trainable_params")
            model, tokenizer = load_checkpoint(summary.best_checkpoint)
            total = sum(p.numel() for p in model.parameters())
            ratio = trainable / total if trainable else None
            test = load_labelled_data(cfg.data).splits["test"]
            test_acc = accuracy_on(
                model, tokenizer, list(test["text"]), list(test["label"]), cfg.data.max_length
            )
            picked = best.params.get("method")
        rows.append((method, summary, test_acc, trainable, ratio, wall, picked, majority, compute))
        if args.out:
            append_row(
                args.out,
                {
                    "sweep": method,
                    "data": data,
                    "overrides": args.overrides,
                    "complete": summary.complete,
                    "pruned": summary.pruned,
                    "best_val": summary.best_value,
                    "majority": majority,
                    "test": test_acc,
                    "trainable": trainable,
                    "trainable_ratio": ratio,
                    "picked": picked,
                    "steps": compute.totals.get("steps_trained", 0),
                    "saved": compute.saved_by_pruning,
                    "wall": wall,
                },
            )
        print_table(rows)


def print_table(rows: list) -> None:
    print(
        "\n| sweep | trials (complete / pruned) | best val acc (majority) | test acc of best | "
        "trainable params | trainable % | steps trained (saved by pruning) | wall time |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for method, s, test_acc, trainable, ratio, wall, picked, majority, compute in rows:
        label = f"{method} (picked {picked})" if picked else method
        steps = f"{compute.totals.get('steps_trained', 0):,.0f} ({compute.saved_by_pruning:.0%})"
        print(
            f"| {label} | {s.complete} / {s.pruned} | {s.best_value:.4f} ({majority:.3f}) | "
            f"{test_acc:.4f} | {trainable:,} | {100 * ratio:.3f} | {steps} | "
            f"{wall / 60:.1f} min |"
            if s.best_value is not None
            else f"| {label} | none |",
            flush=True,
        )


if __name__ == "__main__":
    main()
