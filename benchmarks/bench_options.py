"""Benchmark: which training options move the recipe's test score (issue 16's search-space
question), before any of them goes into a default search space.

    .venv/bin/python benchmarks/bench_options.py --sweep lora --data vader --seeds 1,2,3 \
        --options "recipe:;llrd:train.layer_lr_decay=0.8;loraplus:train.loraplus_lr_ratio=16" \
        [--out rows.jsonl] [--set k=v ...]

Each option is the sweep's recipe with a few overrides (``NAME:key=value,key=value``; the first
option is the baseline), trained alone with seeds 1…k (``train.seed + k``). Per option: the
best validation value and the test value of each seed, their mean ± sd, and the paired
difference from the baseline seed by seed (the same seed: the same data order). Rows (one per
option and seed) are appended to ``--out``; a row already there is not run again.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from bench_recipe import train_runs
from provenance import provenance


def parse_options(text: str) -> dict[str, list[str]]:
    options = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, _, overrides = item.partition(":")
        options[name.strip()] = [o.strip() for o in overrides.split(",") if o.strip()]
    return options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="lora")
    parser.add_argument("--data", default="vader")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--options", required=True)
    parser.add_argument("--out", type=Path, default=Path("bench_options.jsonl"))
    parser.add_argument("--set", nargs="*", default=[], help="Hydra overrides for every run")
    args = parser.parse_args()

    from harness.base.progress import configure_logging

    configure_logging()
    options = parse_options(args.options)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = _rows(args.out)
    for name, overrides in options.items():
        have = {
            r["seed"]
            for r in rows
            if (r["sweep"], r["data"], r["option"]) == (args.sweep, args.data, name)
            and r["overrides"] == overrides
        }
        missing = [k for k in seeds if k not in have]
        if not missing:
            continue
        for run in train_runs(args.sweep, args.data, missing, args.set, overrides):
            run.pop("probabilities")
            run.pop("labels")
            row = {
                "sweep": args.sweep,
                "data": args.data,
                "option": name,
                "overrides": overrides,
                **run,
                **provenance(),
            }
            with args.out.open("a") as out:
                out.write(json.dumps(row) + "\n")
            rows.append(row)
    table(rows, args.sweep, args.data, options, seeds)


def table(
    rows: list[dict], sweep: str, data: str, options: dict[str, list[str]], seeds: list[int]
) -> None:
    def of(name: str) -> dict[int, dict]:
        return {
            r["seed"]: r
            for r in rows
            if (r["sweep"], r["data"], r["option"]) == (sweep, data, name)
            and r["overrides"] == options[name]
            and r["seed"] in seeds
        }

    base = of(next(iter(options)))
    print(
        f"\n{sweep} on {data}, seeds {seeds}: validation and test accuracy, mean ± sd; "
        f"test difference from {next(iter(options))} seed by seed"
    )
    print("| option | overrides | validation | test | test − baseline |")
    print("|---|---|---|---|---|")
    for name, overrides in options.items():
        mine = of(name)
        if not mine:
            continue
        val = [r["val"] for r in mine.values()]
        test = [r["test"] for r in mine.values()]
        diffs = [mine[k]["test"] - base[k]["test"] for k in mine if k in base]
        print(
            f"| {name} | {' '.join(overrides) or '-'} | {_ms(val)} | {_ms(test)} | "
            f"{_ms([100 * d for d in diffs], points=True)} |"
        )


def _ms(values: list[float], points: bool = False) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:+.2f} ± {sd:.2f}" if points else f"{mean:.4f} ± {sd:.4f}"


def _rows(path: Path) -> list[dict]:
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line]
        if path.is_file()
        else []
    )


if __name__ == "__main__":
    main()
