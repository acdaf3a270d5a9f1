"""Benchmark: disk used by a study's checkpoints, bounded (checkpoints.keep) vs unbounded.

    .venv/bin/python benchmarks/bench_disk.py [--trials 10] [--methods full,lora] [--out rows.jsonl]
        [key=value ...]

For each method, runs the same study twice on the embedded model and data, every trial to the
end (pruner=none, the worst case for disk): once keeping every checkpoint (checkpoints.keep=null,
checkpoints.mlflow=all), once with the defaults (the best 2 locally and in MLflow). Each run gets
its own temporary stores; prints a Markdown table of the bytes left on disk (``--out``: the rows,
with their provenance, appended to a JSON-lines file).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from provenance import append_row

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "keep every checkpoint": ["checkpoints.keep=null", "checkpoints.mlflow=all"],
    "best 2 (default)": ["checkpoints.keep=2", "checkpoints.mlflow=kept"],
}


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="trials per study (default 10)")
    parser.add_argument("--methods", default="full,lora", help="sweeps (conf/sweep/NAME.yaml)")
    parser.add_argument("--out", type=Path, help="append every row (with provenance) to this JSONL")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="extra overrides (default: 300 training tweets, 1 epoch, "
        "1 evaluation, to keep the run short)",
    )
    args = parser.parse_args()
    overrides = args.overrides or [
        "data.max_train_samples=300",
        "train.num_train_epochs=1",
        "train.evals_per_epoch=1",
    ]

    import harness  # noqa: F401
    from harness.base.progress import configure_logging
    from harness.study import run_sweep

    configure_logging()
    rows = []
    for method in args.methods.split(","):
        for label, setting in SETTINGS.items():
            with tempfile.TemporaryDirectory(prefix="bench-disk-") as scratch:
                tmp = Path(scratch)
                cfg = compose(
                    [
                        f"+sweep={method}",
                        f"study.n_trials={args.trials}",
                        "pruner=none",
                        f"study.storage=sqlite:///{tmp}/optuna.db",
                        f"study.output_dir={tmp}/study",
                        f"tracking.uri=sqlite:///{tmp}/mlflow.db",
                        f"tracking.artifact_location={tmp}/art",
                        "display.progress=false",
                        *setting,
                        *overrides,
                    ]
                )
                start = time.perf_counter()
                summary = run_sweep(cfg)
                wall = time.perf_counter() - start
                local, mlflow = size(tmp / "study"), size(tmp / "art")
                rows.append((method, label, summary.complete, local, mlflow, wall))
                if args.out:
                    append_row(
                        args.out,
                        {
                            "sweep": method,
                            "checkpoints": label,
                            "overrides": overrides,
                            "trials": summary.complete,
                            "local_bytes": local,
                            "mlflow_bytes": mlflow,
                            "wall": wall,
                        },
                    )
                print(
                    f"{method} / {label}: local {mb(local)}, MLflow artifacts {mb(mlflow)}, "
                    f"{wall:.0f} s",
                    flush=True,
                )
    print(
        "\n| method | checkpoints | trials | local checkpoints | MLflow artifacts | total | wall |"
    )
    print("|---|---|---|---|---|---|---|")
    for method, label, done, local, mlflow, wall in rows:
        print(
            f"| {method} | {label} | {done} | {mb(local)} | {mb(mlflow)} | "
            f"{mb(local + mlflow)} | {wall / 60:.1f} min |"
        )


if __name__ == "__main__":
    main()
