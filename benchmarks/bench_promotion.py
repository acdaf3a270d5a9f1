"""Benchmark: the promotion scheduler against the sweeps' own pruner and no pruning, each study
measured against its recipe (issue 15).

    .venv/bin/python benchmarks/bench_promotion.py [--sweeps lora,full] [--data vader,amazon]
        [--seeds 1,2,3] [--arms promotion,pruned,unpruned] [--out rows.jsonl] [--set k=v ...]

Per sweep, data set and sampler seed, each arm runs the default study in stores of its own:
``promotion`` (the promotion scheduler with the reduction factor of the sweep's own pruner:
pruner=promotion for lora, promotion_third for the others), ``pruned`` (Optuna's successive
halving as each sweep had it before: the better half for lora, the best third for the others)
and ``unpruned`` (pruner=none, with every evaluation: ``train.evaluate_from=0``), with the
final stage as the sweep sets it and the recipe
trained with the chosen configuration's seeds. A row: wall time, training steps of the search
and of the final stage, configurations complete, the chosen configuration (is it the recipe?
the first to reach the full budget?), its seed-mean
validation and test accuracy, the recipe's, and the paired test gain (chosen minus recipe,
seed by seed). Rows are appended to ``--out`` with each trial's validation curves
(``benchmarks/replay_pruners.py --jsonl`` replays the unpruned ones); a row already in the file
is not run again, so a long benchmark can be stopped and resumed. At the end: the table of
every row, then the means per arm (over sweeps, data sets and seeds).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

from bench_peer import compose, scratch_stores, val_curve
from provenance import provenance

# per sweep: the promotion scheduler with the reduction factor of the sweep's successive halving,
# and that successive halving (Optuna's, the pruner each sweep had before the promotion scheduler)
PRUNERS = {"lora": ("promotion", "successive_halving_half")}
OTHER_SWEEPS = ("promotion_third", "successive_halving")


def arm_overrides(sweep: str, arm: str) -> list[str]:
    promotion, todays = PRUNERS.get(sweep, OTHER_SWEEPS)
    return {
        "promotion": [f"pruner={promotion}"],
        "pruned": [f"pruner={todays}"],
        # every evaluation: benchmarks/replay_pruners.py replays the whole curves
        "unpruned": ["pruner=none", "train.evaluate_from=0"],
    }[arm]


def run_arm(sweep: str, data: str, seed: int, arm: str, folder: Path, extra: list[str]) -> dict:
    """One study in its own stores; what it trained and what it chose."""
    from harness.base.storages import load_study  # journal:// and grpc:// too
    from harness.records import final as final_record
    from harness.records import schema, trials
    from harness.records.compute import study_compute
    from harness.study import run_sweep

    name = re.sub(r"[^A-Za-z0-9-]+", "_", f"bench-{sweep}-{data}-{seed}-{arm}")
    cfg = compose(
        [
            f"+sweep={sweep}",
            f"data={data}",
            f"study.name={name}",
            f"sampler.seed={seed}",
            *scratch_stores(name, folder),
            *arm_overrides(sweep, arm),
            *extra,
        ]
    )
    start = time.perf_counter()
    run_sweep(cfg)
    wall = time.perf_counter() - start
    study = load_study(str(cfg.study.storage), name)
    compute = study_compute(study, final_record.companion(study))
    every = study.get_trials(deepcopy=False)
    complete = sorted(
        (t for t in every if t.state.name == "COMPLETE"), key=lambda t: t.datetime_complete
    )
    record = final_record.record(study) or {}
    chosen = record.get("trial")
    chosen_config = (
        trials.config_of(next(t for t in every if t.number == chosen))
        if chosen is not None
        else None
    )
    recipe = record.get("recipe") or {}
    gain = recipe.get("gain") or {}
    config = (record.get("configs") or {}).get(str(chosen), {})
    test = record.get("test") or {}
    recipe_config = next(
        (
            trials.config_of(t)
            for t in every
            if t.user_attrs.get(schema.ENQUEUED_ATTR) == schema.RECIPE_MARK
        ),
        None,
    )
    return {
        "sweep": sweep,
        "data": data,
        "seed": seed,
        "arm": arm,
        "wall": wall,
        "steps": compute.totals.get("steps_trained", 0) - compute.final.get("steps_trained", 0),
        "final_steps": compute.final.get("steps_trained", 0),
        "planned": compute.totals.get("steps_planned", 0),
        "configs": trials.count(study)["finished"],
        "complete_configs": len({trials.config_of(t) for t in complete}),
        "chosen_trial": chosen,
        "chosen_config": chosen_config,
        "chosen_is_recipe": chosen_config is not None and chosen_config == recipe_config,
        "chosen_is_first_complete": bool(complete)
        and chosen_config == trials.config_of(complete[0]),
        "search_best": trials.study_value(trials.best_trial(study)) if complete else None,
        "val": config.get("mean"),
        "val_sd": config.get("sd"),
        "test": test.get("mean"),
        "test_sd": test.get("sd"),
        "recipe_val": recipe.get("mean"),
        "recipe_test": (recipe.get("test") or {}).get("mean"),
        "gain_val": (gain.get("val") or {}).get("mean"),
        "gain_test": (gain.get("test") or {}).get("mean"),
        "gain_test_sd": (gain.get("test") or {}).get("sd"),
        "trials": [
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "config": trials.config_of(t),
                "continues": t.user_attrs.get(schema.CONTINUES_ATTR),
                "curve": val_curve(cfg, t, f"val_{cfg.study.metric}"),
                "loss_curve": val_curve(cfg, t, "val_loss"),
            }
            for t in every
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", default="lora,full")
    parser.add_argument("--data", default="vader,amazon")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated sampler seeds")
    parser.add_argument("--arms", default="promotion,pruned,unpruned")
    parser.add_argument("--out", type=Path, default=Path("bench_promotion.jsonl"))
    parser.add_argument("--set", nargs="*", default=[], help="Hydra overrides for every study")
    args = parser.parse_args()

    from harness.base.progress import configure_logging

    configure_logging()
    done = {(r["sweep"], r["data"], r["seed"], r["arm"]): r for r in _rows(args.out)}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for sweep in args.sweeps.split(","):
            for data in args.data.split(","):
                for arm in args.arms.split(","):
                    if (sweep, data, seed, arm) in done:
                        continue
                    with tempfile.TemporaryDirectory(prefix="bench-promotion-") as scratch:
                        row = run_arm(sweep, data, seed, arm, Path(scratch), args.set)
                    # where and how it was measured (its "machine" key: CPU count and AVX-512
                    # BF16, since bf16 autocast changes the trajectories; see provenance.py)
                    row.update(provenance())
                    with args.out.open("a") as out:
                        out.write(json.dumps(row) + "\n")
                    done[(sweep, data, seed, arm)] = row
                    print_rows([row])
    rows = [
        r
        for r in _rows(args.out)
        if r["arm"] in args.arms.split(",")
        and r["sweep"] in args.sweeps.split(",")
        and r["data"] in args.data.split(",")
    ]
    print_rows(rows)
    print_means(rows)


def _rows(path: Path) -> list[dict]:
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line]
        if path.is_file()
        else []
    )


def _f(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_rows(rows: list[dict]) -> None:
    print(
        "\n| sweep | data | seed | arm | wall s | search steps | final steps | complete "
        "| chosen (config) | recipe? | first complete? | val | test | recipe test "
        "| test gain |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        gain = "-" if r["gain_test"] is None else f"{100 * r['gain_test']:+.2f}"
        print(
            f"| {r['sweep']} | {r['data']} | {r['seed']} | {r['arm']} | {r['wall']:.0f} | "
            f"{r['steps']:,.0f} | {r['final_steps']:,.0f} | {r['complete_configs']} | "
            f"{r['chosen_trial']} ({r['chosen_config']}) | {r['chosen_is_recipe']} | "
            f"{r['chosen_is_first_complete']} | {_f(r['val'])} | {_f(r['test'])} | "
            f"{_f(r['recipe_test'])} | {gain} |",
            flush=True,
        )


def print_means(rows: list[dict]) -> None:
    """Per arm: means over every (sweep, data, seed) it ran, and per sweep."""
    print(
        "\n| arm | studies | search steps | vs pruned | val | test | test gain (points) "
        "| chosen = first complete | chance (1 / complete) | chosen = recipe |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["sweep"], r["arm"]), []).append(r)
        groups.setdefault(("all", r["arm"]), []).append(r)
    for (sweep, arm), mine in sorted(groups.items()):
        pruned = {
            (r["sweep"], r["data"], r["seed"]): r["steps"] for r in rows if r["arm"] == "pruned"
        }
        ratios = [
            r["steps"] / pruned[(r["sweep"], r["data"], r["seed"])]
            for r in mine
            if pruned.get((r["sweep"], r["data"], r["seed"]))
        ]

        def mean(key: str, of: list[dict] = mine) -> float | None:
            values = [r[key] for r in of if r[key] is not None]
            return statistics.mean(values) if values else None

        gain = mean("gain_test")
        print(
            f"| {arm} ({sweep}) | {len(mine)} | {mean('steps'):,.0f} | "
            f"{'-' if not ratios else f'{statistics.mean(ratios):.2f}x'} | "
            f"{_f(mean('val'))} | {_f(mean('test'))} | "
            f"{'-' if gain is None else f'{100 * gain:+.2f}'} | "
            f"{statistics.mean(float(r['chosen_is_first_complete']) for r in mine):.2f} | "
            f"{statistics.mean(1 / max(1, r['complete_configs']) for r in mine):.2f} | "
            f"{statistics.mean(float(r['chosen_is_recipe']) for r in mine):.2f} |"
        )


if __name__ == "__main__":
    main()
