"""What `train.cpu_dropout=fast` saves, and that it trains as well: one fine-tune at a sweep's
recipe, its whole budget as a final-stage run, with torch's dropout and the fast one in turn,
for each training seed and data set, on the embedded model.

    .venv/bin/python benchmarks/bench_dropout.py [--sweep lora] [--data vader,amazon]
        [--seeds 42,43,44] [--out rows.jsonl] [key=value ...]

The two settings alternate (torch, fast; next seed), so a machine whose speed drifts slows each
alike. The masks differ, so the two runs of a seed train along different paths: their best
validation values differ as two seeds' do, and only their means over seeds compare. Prints a
Markdown row per run (seconds inside ``Trainer.train``, the best validation value) and, per data
set, the mean time and value of each setting.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from provenance import append_row

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("torch", "fast")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="lora", help="a sweep name (conf/sweep/NAME.yaml)")
    parser.add_argument(
        "--data", default="vader,amazon", help="embedded data sets, comma-separated"
    )
    parser.add_argument("--seeds", default="42,43,44", help="training seeds, comma-separated")
    parser.add_argument("--out", type=Path, help="append every row (with provenance) to this JSONL")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides")
    args = parser.parse_args()

    from hydra import compose, initialize_config_dir

    from harness.base.progress import configure_logging
    from harness.study import prepare_study, validate_config
    from harness.train.finetune import finetune

    configure_logging()
    print("| data | seed | cpu_dropout | train s | best | at step |")
    print("|---|---|---|---|---|---|")
    rows: list[dict] = []
    for data in args.data.split(","):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(
                config_name="config",
                overrides=[f"+sweep={args.sweep}", f"data={data}", *args.overrides],
            )
        prepared = prepare_study(cfg, validate_config(cfg))
        recipe = dict(cfg.recipe or {})
        for seed in map(int, args.seeds.split(",")):
            for setting in SETTINGS:
                values = {**recipe, "train.seed": seed, "train.cpu_dropout": setting}
                trial_cfg = prepared.space.apply(cfg, values)
                start = time.perf_counter()
                result = finetune(
                    trial_cfg,
                    prepared.base,
                    prepared.datasets,
                    prepared.metrics,
                    decisions=frozenset(),  # a final-stage run: evaluations 8-12 only
                )
                row = {
                    "sweep": args.sweep,
                    "data": data,
                    "seed": seed,
                    "cpu_dropout": setting,
                    "precision": str(trial_cfg.train.mixed_precision),
                    "best": result.value,
                    "best_step": result.best_step,
                    "steps": result.steps,
                    "train_runtime": result.train_runtime,
                    "wall": time.perf_counter() - start,
                    "overrides": args.overrides,
                }
                rows.append(row)
                print(
                    f"| {data} | {seed} | {setting} | {result.train_runtime:.1f} | "
                    f"{result.value:.4f} | {result.best_step} |",
                    flush=True,
                )
                if args.out:
                    append_row(args.out, row)
    for data in args.data.split(","):
        mean = {
            s: (
                statistics.fmean(
                    r["train_runtime"] for r in rows if (r["data"], r["cpu_dropout"]) == (data, s)
                ),
                statistics.fmean(
                    r["best"] for r in rows if (r["data"], r["cpu_dropout"]) == (data, s)
                ),
            )
            for s in SETTINGS
        }
        print(
            f"{data}: fast {mean['fast'][0]:.1f} s against torch {mean['torch'][0]:.1f} s "
            f"({mean['fast'][0] / mean['torch'][0]:.2f}x); best validation "
            f"{mean['fast'][1]:.4f} against {mean['torch'][1]:.4f}"
        )


if __name__ == "__main__":
    main()
