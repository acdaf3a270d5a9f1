"""Benchmark: what the harness ships against the recipe it replaces, at the recipe's cost and at
the harness's (issue 16).

    .venv/bin/python benchmarks/bench_recipe.py [--sweeps lora,full] [--data vader,amazon]
        [--seeds 1,2,3] [--out rows.jsonl] [--cache .bench-cache] [--no-rival] [--set k=v ...]

Per sweep, data set and sampler seed:

- **harness**: the default study (``+sweep=<sweep> data=<data> sampler.seed=<seed>``) in stores of
  its own, its final stage's clean-up held back so that every model it trained and kept stays;
  then what each ``final.combine`` ships, from those same models: ``best`` (the chosen
  configuration's best seed), ``soup`` (greedy soup of its seeds), ``ensemble`` (greedy ensemble
  selection over every kept model) and ``auto`` (the best of them on validation). Steps: the
  search's and the final stage's. The study's own recipe runs (2 seeds) give a first recipe
  mean.
- **recipe**: the sweep's recipe trained alone with seeds 1…N (``train.seed + k``: the final
  stage's seeds, so seeds 1-2 are the study's own recipe runs), N the harness's whole compute in
  recipe runs (its steps / one recipe run's, rounded up): the recipe's test mean ± sd over the N
  seeds, and the **equal-compute recipe ensemble** (the N seeds' mean probability, no selection:
  the fair rival at the harness's cost). Recipe runs are cached per sweep and data set
  (``--cache``), so sampler seeds share them.

Every figure is on the test split, scored after everything was chosen on validation. A row is
appended to ``--out`` per (sweep, data, seed) once its study ran, and again once its rival
did (the last row of a key counts); a row already there is not run again. At the end:
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
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from bench_peer import compose, scratch_stores
from provenance import provenance


def harness_study(sweep: str, data: str, seed: int, folder: Path, extra: list[str]) -> dict:
    """The default study; then, from the models it kept (the final stage's clean-up is held
    back here, so every final run's checkpoint stays), what each ``final.combine`` would ship
    and its test score: the chosen seed (best), the greedy soup of its seeds, the greedy
    ensemble, and auto's pick among them."""
    from harness.base.storages import load_study  # journal:// and grpc:// too
    from harness.records import final as final_record
    from harness.records.compute import study_compute
    from harness.study import combine, run_sweep
    from harness.study.final import FinalStage
    from harness.study.setup import prepare_study, validate_config

    name = re.sub(r"[^A-Za-z0-9-]+", "_", f"bench-recipe-{sweep}-{data}-{seed}")
    cfg = compose(
        [
            f"+sweep={sweep}",
            f"data={data}",
            f"study.name={name}",
            f"sampler.seed={seed}",
            *scratch_stores(name, folder),
            "final.combine=best",
            *extra,
        ]
    )
    keep_only = FinalStage._keep_only
    FinalStage._keep_only = lambda self, best_run, members: None  # every final run stays
    try:
        start = time.perf_counter()
        run_sweep(cfg)
        wall = time.perf_counter() - start
    finally:
        FinalStage._keep_only = keep_only
    study = load_study(str(cfg.study.storage), name)
    compute = study_compute(study, final_record.companion(study))
    record = final_record.record(study) or {}
    test = record.get("test") or {}
    recipe = record.get("recipe") or {}
    seed_test = (test.get("values") or {}).get(str(record.get("seed")))

    prepared = prepare_study(cfg, validate_config(cfg))
    validation, split = prepared.datasets["validation"], prepared.datasets["test"]
    metric, metrics = str(cfg.study.metric), prepared.metrics
    out = Path(str(cfg.study.output_dir))
    found = combine.candidates(study, final_record.companion(study), out, out / "final")
    ensemble = combine.select(
        int(cfg.final.ensemble_size), found, list(validation["label"]), metrics, metric, True, out
    )
    chosen = f"final-{record['trial']}-seed"
    soup = combine.greedy_soup(
        [c for c in found if c.name.startswith(chosen)],
        validation,
        metrics,
        metric,
        True,
        out,
        out / "final",
    )
    figures = {"seed": (record["seed_value"], seed_test)}
    for kind, combined in (("ensemble", ensemble), ("soup", soup)):
        if combined:
            combined["test"] = combine.test_score(combined, out, split, metrics, metric)
            figures[kind] = (combined["val"], combined["test"]["value"])
    auto = combine.decide("auto", record["seed_value"], True, ensemble, soup)
    return {
        "wall": wall,
        "steps": compute.totals.get("steps_trained", 0),
        "final_steps": compute.final.get("steps_trained", 0),
        "chosen_trial": record.get("trial"),
        "chosen_val": record.get("seed_value"),
        "chosen_seeds_test": test.get("mean"),
        "best_test": seed_test,
        "candidates": [c.name for c in found],
        "ensemble_val": figures.get("ensemble", (None, None))[0],
        "ensemble_test": figures.get("ensemble", (None, None))[1],
        "ensemble_members": [
            (m["name"], round(m["weight"], 3)) for m in (ensemble or {}).get("members", [])
        ],
        "soup_val": figures.get("soup", (None, None))[0],
        "soup_test": figures.get("soup", (None, None))[1],
        "soup_members": (soup or {}).get("members", []),
        "auto_ships": auto,
        "auto_test": figures[auto][1],
        "study_recipe_test": (recipe.get("test") or {}).get("values"),
        "study_recipe_test_mean": (recipe.get("test") or {}).get("mean"),
    }


def train_runs(
    sweep: str, data: str, seeds: list[int], extra: list[str], overrides: list[str] = ()
) -> Iterator[dict]:
    """The sweep's recipe (with ``overrides`` on top) trained alone, one run per seed
    (``train.seed + k``, as the final stage seeds): per seed, as each ends, its steps, wall
    time, best validation value and test probabilities (numpy)."""
    from omegaconf import OmegaConf

    from harness.study.setup import prepare_study, validate_config
    from harness.train.finetune import finetune
    from harness.train.scoring import checkpoint_probabilities, score_probabilities

    cfg = compose([f"+sweep={sweep}", f"data={data}", "display.progress=false", *extra])
    space = validate_config(cfg)
    if cfg.study.get("threads"):  # as a sweep's worker sets them (two benchmarks side by side)
        import torch

        torch.set_num_threads(int(cfg.study.threads))
    prepared = prepare_study(cfg, space)
    test = prepared.datasets["test"]
    metric = str(cfg.study.metric)
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
            result = finetune(
                trial_cfg,
                prepared.base,
                prepared.datasets,
                prepared.metrics,
                checkpoint_dir=Path(scratch) / "checkpoint",
            )
            wall = time.perf_counter() - start
            probabilities = checkpoint_probabilities(result.checkpoint, test)
        run = {
            "seed": k,
            "steps": result.steps,
            "wall": wall,
            "val": result.value,
            "test": score_probabilities(probabilities, test, prepared.metrics)[metric],
            "probabilities": probabilities,
            "labels": np.asarray(test["label"]),
        }
        print(
            f"  {sweep} {data} {' '.join(overrides) or 'recipe'} seed {k}: {result.steps} "
            f"steps, {wall:.0f} s, validation {result.value:.4f}, test {run['test']:.4f}",
            flush=True,
        )
        yield run


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
    runs = [json.loads(line) for line in index.read_text().splitlines()] if index.is_file() else []
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
    return {
        "recipe_seeds": len(runs),
        "recipe_steps": sum(r["steps"] for r in runs),
        "recipe_wall": sum(r["wall"] for r in runs),
        "recipe_test_mean": statistics.fmean(tests),
        "recipe_test_sd": statistics.stdev(tests) if len(tests) > 1 else 0.0,
        "recipe_tests": tests,
        "recipe_ensemble_test": float((mean.argmax(-1) == labels).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", default="lora,full")
    parser.add_argument("--data", default="vader,amazon")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated sampler seeds")
    parser.add_argument("--out", type=Path, default=Path("bench_recipe.jsonl"))
    parser.add_argument("--cache", type=Path, default=Path(".bench-cache"))
    parser.add_argument(
        "--no-rival",
        action="store_true",
        help="the harness's studies only (no equal-compute recipe ensemble)",
    )
    parser.add_argument("--set", nargs="*", default=[], help="Hydra overrides for every study")
    args = parser.parse_args()

    from harness.base.progress import configure_logging

    configure_logging()
    rows = _rows(args.out)
    for seed in [int(s) for s in args.seeds.split(",")]:
        for sweep in args.sweeps.split(","):
            for data in args.data.split(","):
                row = next(
                    (r for r in rows if (r["sweep"], r["data"], r["seed"]) == (sweep, data, seed)),
                    None,
                )
                if row is None:
                    with tempfile.TemporaryDirectory(prefix="bench-recipe-") as scratch:
                        row = {
                            "sweep": sweep,
                            "data": data,
                            "seed": seed,
                            **harness_study(sweep, data, seed, Path(scratch), args.set),
                            **provenance(),
                        }
                    _append(args.out, row)
                    rows.append(row)
                if args.no_rival or "recipe_ensemble_test" in row:
                    continue
                one = next(iter(recipe_runs(sweep, data, 1, args.cache, args.set)))["steps"]
                count = max(1, math.ceil(row["steps"] / one))
                runs = recipe_runs(sweep, data, count, args.cache, args.set)
                row.update(recipe_figures(sweep, data, runs, args.cache))
                # the rival's runs may come from a later process (or machine) than the study's
                row["rival_provenance"] = provenance()
                _append(args.out, row)  # the completed row: the last one of its key counts
    wanted = {
        (r["sweep"], r["data"], r["seed"]): r
        for r in _rows(args.out)
        if r["sweep"] in args.sweeps.split(",") and r["data"] in args.data.split(",")
    }
    print_rows(list(wanted.values()))
    print_means(list(wanted.values()))


def _append(path: Path, row: dict) -> None:
    with path.open("a") as out:
        out.write(json.dumps(row) + "\n")


def _rows(path: Path) -> list[dict]:
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line]
        if path.is_file()
        else []
    )


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def print_rows(rows: list[dict]) -> None:
    print(
        "| sweep | data | seed | steps (recipe x N) | recipe test mean ± sd | "
        "recipe ensemble (N) | best | soup (seeds) | ensemble (members) | auto ships |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        recipe = (
            f"{_f(r['recipe_test_mean'])} ± {_f(r['recipe_test_sd'])}"
            if "recipe_test_mean" in r
            else f"{_f(r['study_recipe_test_mean'])} (2 seeds, the study's)"
        )
        print(
            f"| {r['sweep']} | {r['data']} | {r['seed']} | {r['steps']} "
            f"({r.get('recipe_steps', '-')} = {r.get('recipe_seeds', '-')} runs) | "
            f"{recipe} | {_f(r.get('recipe_ensemble_test'))} | {_f(r['best_test'])} | "
            f"{_f(r['soup_test'])} ({len(r['soup_members'])}) | "
            f"{_f(r['ensemble_test'])} ({len(r['ensemble_members'])}) | "
            f"{r['auto_ships']} {_f(r['auto_test'])} |"
        )


def print_means(rows: list[dict]) -> None:
    if not rows:
        return
    keys = (
        "study_recipe_test_mean",
        "recipe_test_mean",
        "recipe_ensemble_test",
        "best_test",
        "soup_test",
        "ensemble_test",
        "auto_test",
    )
    means = {
        k: statistics.fmean(values)
        for k in keys
        if (values := [r[k] for r in rows if r.get(k) is not None])
    }
    print(
        f"\nMeans over {len(rows)} row(s): " + ", ".join(f"{k} {v:.4f}" for k, v in means.items())
    )
    for k in ("best_test", "soup_test", "ensemble_test", "auto_test"):
        for rival in ("study_recipe_test_mean", "recipe_test_mean", "recipe_ensemble_test"):
            gains = [
                r[k] - r[rival] for r in rows if r.get(k) is not None and r.get(rival) is not None
            ]
            if gains:
                print(
                    f"  {k} - {rival}: {100 * statistics.fmean(gains):+.2f} points "
                    f"({len(gains)} row(s))"
                )


if __name__ == "__main__":
    main()
