"""Benchmark: memory over the trials of one study (is anything leaking from trial to trial?).

    .venv/bin/python benchmarks/bench_memory.py [--trials 6] [--out rows.jsonl] [key=value ...]

Runs a study on the embedded model and data in temporary stores (default: LoRA, 300 training
tweets, 1 epoch, every trial to the end) and prints, per trial, what its MLflow run logged: the
process's resident memory at the trial's end, the process's peak so far and, on a GPU, the GPU's
peak during the trial (``--out``: one row per trial, with its provenance, appended to a
JSON-lines file).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from provenance import append_row

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("process_rss_mb", "process_peak_rss_mb", "gpu_peak_memory_mb")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--out", type=Path, help="append every row (with provenance) to this JSONL")
    parser.add_argument(
        "overrides",
        nargs="*",
        default=[
            "+sweep=lora",
            "data.max_train_samples=300",
            "train.num_train_epochs=1",
            "train.evals_per_epoch=1",
            "pruner=none",
        ],
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        tracking = f"sqlite:///{tmp}/mlflow.db"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "harness.sweep",
                *args.overrides,
                f"study.n_trials={args.trials}",
                "study.name=bench-memory",
                f"study.storage=sqlite:///{tmp}/optuna.db",
                f"study.output_dir={tmp}/s",
                f"tracking.uri={tracking}",
                f"tracking.artifact_location={tmp}/art",
                "display.progress=false",
            ],
            cwd=ROOT,
            check=True,
        )
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking)
        experiment = client.get_experiment_by_name("bench-memory")
        runs = client.search_runs(
            [experiment.experiment_id], filter_string="tags.`harness.role` = 'trial'"
        )
        runs.sort(key=lambda r: int(r.data.tags["optuna.trial_number"]))
        shown = [m for m in METRICS if any(m in r.data.metrics for r in runs)]
        print("\n| trial | " + " | ".join(shown) + " |\n|---|" + "---|" * len(shown))
        for run in runs:
            values = [
                f"{run.data.metrics[m]:,.0f}" if m in run.data.metrics else "-" for m in shown
            ]
            print(f"| {run.data.tags['optuna.trial_number']} | " + " | ".join(values) + " |")
            if args.out:
                append_row(
                    args.out,
                    {
                        "trial": int(run.data.tags["optuna.trial_number"]),
                        "overrides": args.overrides,
                        **{m: run.data.metrics.get(m) for m in shown},
                    },
                )


if __name__ == "__main__":
    main()
