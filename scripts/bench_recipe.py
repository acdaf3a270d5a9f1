"""Benchmark: what the harness ships against the recipe it replaces, at the recipe's cost and at
the harness's (issue 16).

    .venv/bin/python scripts/bench_recipe.py [--sweeps lora,full] [--data vader,amazon]
        [--seeds 1,2,3] [--out rows.jsonl] [--cache .bench-cache] [--set k=v ...]

Per sweep, data set and sampler seed:

- **harness**: the default study (``+sweep=<sweep> data=<data> sampler.seed=<seed>``) in stores of
  its own, with ``final.combine=ensemble`` so that one study gives both what ``best`` ships (the
  chosen configuration's best seed) and what the ensemble ships; ``auto`` is read off the record
  (the ensemble when it holds 2+ models and beats the seed on validation). Steps: the search's
  and the final stage's.
- **recipe**: the sweep's recipe trained alone with seeds 1…N (``train.seed + k``: the final
  stage's seeds, so seeds 1-2 are the study's own recipe runs), N the harness's whole compute in
  recipe runs (its steps / one recipe run's, rounded up): the recipe's test mean ± sd over the N
  seeds, and the **equal-compute recipe ensemble** (the N seeds' mean probability, no selection:
  the fair rival at the harness's cost). Recipe runs are cached per sweep and data set
  (``--cache``), so sampler seeds share them.

Every figure is on the test split, scored after everything was chosen on validation. A row is
appended to ``--out`` per (sweep, data, seed); a row already there is not run again. At the end:
the table, and the means over the rows.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_peer import compose


def harness_study(sweep: str, data: str, seed: int, folder: Path, extra: list[str]) -> dict:
    """The default study, its final stage combining (``ensemble``): what each choice ships."""
    import optuna

    from harness.records import final as final_record
    from harness.records.compute import study_compute
    from harness.study import run_sweep

    name = re.sub(r"[^A-Za-z0-9-]+", "_", f"bench-recipe-{sweep}-{data}-{seed}")
    cfg = compose([f"+sweep={sweep}", f"data={data}", f"study.name={name}",
                   f"sampler.seed={seed}", f"study.storage=sqlite:///{folder}/optuna.db",
                   f"study.output_dir={folder}/{name}", f"tracking.uri=sqlite:///{folder}/ml.db",
                   f"tracking.artifact_location={folder}/mlruns", "report.enabled=false",
                   "display.progress=false", "final.combine=ensemble", *extra])
    start = time.perf_counter()
    run_sweep(cfg)
    wall = time.perf_counter() - start
    study = optuna.load_study(study_name=name, storage=str(cfg.study.storage))
    compute = study_compute(study, final_record.companion(study))
    record = final_record.record(study) or {}
    ensemble = record.get("ensemble") or {}
    test = record.get("test") or {}
    recipe = record.get("recipe") or {}
    seed_test = (test.get("values") or {}).get(str(record.get("seed")))
    ensemble_test = (ensemble.get("test") or {}).get("value")
    auto_ensemble = bool(ensemble) and len(ensemble["members"]) > 1 and (
        ensemble["val"] > record["seed_value"])
    return {
        "wall": wall, "steps": compute.totals.get("steps_trained", 0),
        "final_steps": compute.final.get("steps_trained", 0),
        "chosen_trial": record.get("trial"), "chosen_val": record.get("seed_value"),
        "chosen_seeds_test": test.get("mean"), "best_test": seed_test,
        "ensemble_val": ensemble.get("val"), "ensemble_test": ensemble_test,
        "ensemble_members": [(m["name"], round(m["weight"], 3)) for m in
                             ensemble.get("members", [])],
        "auto_ships": "ensemble" if auto_ensemble else "best",
        "auto_test": ensemble_test if auto_ensemble else seed_test,
        "study_recipe_test": (recipe.get("test") or {}).get("values"),
    }


def train_runs(sweep: str, data: str, seeds: list[int], extra: list[str],
               overrides: list[str] = ()) -> list[dict]:
    """The sweep's recipe (with ``overrides`` on top) trained alone, one run per seed
    (``train.seed + k``, as the final stage seeds): per seed its steps, wall time, best
    validation value and test probabilities (numpy)."""
    from omegaconf import OmegaConf

    from harness.study.setup import prepare_study, validate_config
    from harness.train.finetune import finetune
    from harness.train.scoring import checkpoint_probabilities, score_probabilities

    cfg = compose([f"+sweep={sweep}", f"data={data}", "display.progress=false", *extra])
    space = validate_config(cfg)
    prepared = prepare_study(cfg, space)
    test = prepared.datasets["test"]
    metric = str(cfg.study.metric)
    out = []
    for k in seeds:
        trial_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        for key, value in cfg.recipe.items():
            OmegaConf.update(trial_cfg, key, value, merge=False)
        for override in overrides:
            key, value = override.split("=", 1)
            OmegaConf.update(trial_cfg, key, _value(value), merge=False)
        trial_cfg.train.seed = int(cfg.train.seed) + k
        with tempfile.TemporaryDirectory(prefix="bench-recipe-") as scratch:
            start = time.perf_counter()
            result = finetune(trial_cfg, prepared.base, prepared.datasets, prepared.metrics,
                              checkpoint_dir=Path(scratch) / "checkpoint")
            wall = time.perf_counter() - start
            probabilities = checkpoint_probabilities(result.checkpoint, test)
        out.append({"seed": k, "steps": result.steps, "wall": wall, "val": result.value,
                    "test": score_probabilities(probabilities, test, prepared.metrics)[metric],
                    "probabilities": probabilities,
                    "labels": np.asarray(test["label"])})
        print(f"  {sweep} {data} {' '.join(overrides) or 'recipe'} seed {k}: {result.steps} "
              f"steps, {wall:.0f} s, validation {result.value:.4f}, test {out[-1]['test']:.4f}",
              flush=True)
    return out


def _value(text: str):
    """A command-line value as YAML reads it (0.8 -> float, true -> bool)."""
    import yaml

    return yaml.safe_load(text)


def recipe_runs(sweep: str, data: str, count: int, cache: Path, extra: list[str]) -> list[dict]:
    """The recipe trained alone with seeds 1…count (cached): per seed its steps, wall time,
    validation value and test accuracy (probabilities in the cache)."""
    cache.mkdir(parents=True, exist_ok=True)
    stem = cache / f"recipe-{sweep}-{data}"
    index = Path(f"{stem}.jsonl")
    runs = [json.loads(line) for line in index.read_text().splitlines()] if index.is_file() \
        else []
    if len(runs) >= count:
        return runs[:count]
    for run in train_runs(sweep, data, list(range(len(runs) + 1, count + 1)), extra):
        np.save(f"{stem}-seed{run['seed']}.npy", run.pop("probabilities"))
        np.save(f"{stem}-labels.npy", run.pop("labels"))
        with index.open("a") as out:
            out.write(json.dumps(run) + "\n")
        runs.append(run)
    return runs


def recipe_figures(sweep: str, data: str, runs: list[dict], cache: Path) -> dict:
    stem = cache / f"recipe-{sweep}-{data}"
    labels = np.load(f"{stem}-labels.npy")
    mean = sum(np.load(f"{stem}-seed{r['seed']}.npy") for r in runs) / len(runs)
    tests = [r["test"] for r in runs]
    return {"recipe_seeds": len(runs), "recipe_steps": sum(r["steps"] for r in runs),
            "recipe_wall": sum(r["wall"] for r in runs),
            "recipe_test_mean": statistics.fmean(tests),
            "recipe_test_sd": statistics.stdev(tests) if len(tests) > 1 else 0.0,
            "recipe_tests": tests,
            "recipe_ensemble_test": float((mean.argmax(-1) == labels).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", default="lora,full")
    parser.add_argument("--data", default="vader,amazon")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated sampler seeds")
    parser.add_argument("--out", type=Path, default=Path("bench_recipe.jsonl"))
    parser.add_argument("--cache", type=Path, default=Path(".bench-cache"))
    parser.add_argument("--set", nargs="*", default=[], help="Hydra overrides for every study")
    args = parser.parse_args()

    from harness.base.progress import configure_logging

    configure_logging()
    rows = _rows(args.out)
    done = {(r["sweep"], r["data"], r["seed"]) for r in rows}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for sweep in args.sweeps.split(","):
            for data in args.data.split(","):
                if (sweep, data, seed) in done:
                    continue
                with tempfile.TemporaryDirectory(prefix="bench-recipe-") as scratch:
                    row = {"sweep": sweep, "data": data, "seed": seed,
                           **harness_study(sweep, data, seed, Path(scratch), args.set)}
                one = recipe_runs(sweep, data, 1, args.cache, args.set)[0]["steps"]
                count = max(1, math.ceil(row["steps"] / one))
                runs = recipe_runs(sweep, data, count, args.cache, args.set)
                row.update(recipe_figures(sweep, data, runs, args.cache))
                with args.out.open("a") as out:
                    out.write(json.dumps(row) + "\n")
                rows.append(row)
                print_rows([row])
    wanted = [r for r in rows if r["sweep"] in args.sweeps.split(",")
              and r["data"] in args.data.split(",")]
    print_rows(wanted)
    print_means(wanted)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line] \
        if path.is_file() else []


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def print_rows(rows: list[dict]) -> None:
    print("| sweep | data | seed | steps (recipe x N) | recipe test mean ± sd | "
          "recipe ensemble (N) | best | ensemble (members) | auto ships |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['sweep']} | {r['data']} | {r['seed']} | {r['steps']} "
              f"({r['recipe_steps']} = {r['recipe_seeds']} runs) | "
              f"{_f(r['recipe_test_mean'])} ± {_f(r['recipe_test_sd'])} | "
              f"{_f(r['recipe_ensemble_test'])} | {_f(r['best_test'])} | "
              f"{_f(r['ensemble_test'])} ({len(r['ensemble_members'])}) | "
              f"{r['auto_ships']} {_f(r['auto_test'])} |")


def print_means(rows: list[dict]) -> None:
    if not rows:
        return
    keys = ("recipe_test_mean", "recipe_ensemble_test", "best_test", "ensemble_test",
            "auto_test")
    means = {k: statistics.fmean(r[k] for r in rows if r[k] is not None) for k in keys}
    print(f"\nMeans over {len(rows)} row(s): " + ", ".join(f"{k} {v:.4f}"
                                                         for k, v in means.items()))
    for k in ("best_test", "ensemble_test", "auto_test"):
        gains = [r[k] - r["recipe_test_mean"] for r in rows if r[k] is not None]
        rival = [r[k] - r["recipe_ensemble_test"] for r in rows if r[k] is not None]
        print(f"  {k}: vs the recipe's mean {100 * statistics.fmean(gains):+.2f} points, vs the "
              f"equal-compute recipe ensemble {100 * statistics.fmean(rival):+.2f} points")


if __name__ == "__main__":
    main()
