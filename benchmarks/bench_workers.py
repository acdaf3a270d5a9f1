"""Benchmark: trials per hour with 1 vs 2 workers, and the storage's overhead per trial.

    .venv/bin/python benchmarks/bench_workers.py [--trials 4] [--storage-trials 50] [--skip-sweeps]
        [--out rows.jsonl]

1. The default sweep (LoRA on the embedded MiniLM + VADER tweets) in fresh temporary stores,
   run with `python -m harness.sweep`: 1 worker with 1 thread, 2 workers with 1 thread each
   (study.workers=2 study.threads=1), and 1 worker with every core (the default). Trials per
   hour = finished trials / wall time of the whole command (start-up included).
2. Optuna storage cost of one trial as the harness uses it (RDBStorage with the heartbeat; ask,
   3 reported evaluations, 6 user attrs, tell) with a trivial objective, on SQLite and on
   PostgreSQL (a temporary database on 127.0.0.1:5432, dropped after).

``--out`` appends every row (with its provenance) to a JSON-lines file.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from provenance import append_row

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get("HARNESS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def sweep(trials: int, extra: list[str]) -> tuple[int, float]:
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        command = [
            sys.executable,
            "-m",
            "harness.sweep",
            "+sweep=lora",
            f"study.n_trials={trials}",
            f"study.storage=sqlite:///{tmp}/optuna.db",
            f"study.output_dir={tmp}/study",
            f"tracking.uri=sqlite:///{tmp}/mlflow.db",
            f"tracking.artifact_location={tmp}/art",
            "display.progress=false",
            *extra,
        ]
        start = time.perf_counter()
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    finished = int(re.search(r"\): (\d+) of \d+ trials finished", result.stdout).group(1))
    return finished, wall


def storage_cost(url: str, trials: int) -> float:
    """Seconds of storage work per trial (trivial objective)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=10, grace_period=60)
    study = optuna.create_study(
        study_name=f"bench-{uuid.uuid4().hex[:6]}", storage=storage, direction="maximize"
    )

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 1e-4, 1e-2, log=True)
        r = trial.suggest_categorical("r", [4, 8, 16])
        trial.set_user_attr("worker", {"host": "h", "boot": "b", "pid": 1})
        trial.set_user_attr("mlflow_run_id", "0" * 32)
        for step in (1, 2, 3):
            trial.report(x * step, step)
            trial.should_prune()
        for key in ("trainable_params", "train_runtime_s", "overhead_s", "x"):
            trial.set_user_attr(key, r)
        return x

    study.optimize(objective, n_trials=3)  # warm up: tables, connections
    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return (time.perf_counter() - start) / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4, help="trials per sweep (default 4)")
    parser.add_argument("--storage-trials", type=int, default=50)
    parser.add_argument("--skip-sweeps", action="store_true")
    parser.add_argument("--out", type=Path, help="append every row (with provenance) to this JSONL")
    args = parser.parse_args()

    if not args.skip_sweeps:
        rows = []
        for label, extra in [
            ("1 worker, 1 thread", ["study.threads=1"]),
            ("2 workers, 1 thread each", ["study.workers=2", "study.threads=1"]),
            ("1 worker, all cores (default)", []),
        ]:
            finished, wall = sweep(args.trials, extra)
            rows.append((label, finished, wall))
            if args.out:
                append_row(args.out, {"workers": label, "trials": finished, "wall": wall})
            print(f"{label}: {finished} trials in {wall:.0f} s", flush=True)
        print("\n| workers | trials | wall | trials per hour |\n|---|---|---|---|")
        for label, finished, wall in rows:
            print(f"| {label} | {finished} | {wall / 60:.1f} min | {finished * 3600 / wall:.1f} |")

    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        sqlite = storage_cost(f"sqlite:///{tmp}/optuna.db", args.storage_trials)
    import psycopg

    name = f"harness_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            base = PG.rsplit("/", 1)[0]
            postgres = storage_cost(f"{base}/{name}", args.storage_trials)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if args.out:
        for storage, seconds in (("SQLite", sqlite), ("PostgreSQL", postgres)):
            append_row(
                args.out,
                {"storage": storage, "trials": args.storage_trials, "per_trial_s": seconds},
            )
    print(f"\n| storage | per trial ({args.storage_trials} trials) |\n|---|---|")
    print(f"| SQLite | {sqlite * 1000:.1f} ms |\n| PostgreSQL | {postgres * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
