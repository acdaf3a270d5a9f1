"""The Markdown tables of docs/benchmarks.md, generated from the committed result rows.

    .venv/bin/python benchmarks/report.py                 # print every table
    .venv/bin/python benchmarks/report.py --write         # replace them in docs/benchmarks.md
    .venv/bin/python benchmarks/report.py --check         # exit 1 if the page is out of date

Reads ``benchmarks/results/*.jsonl`` (a row already in a file and written again later, as
bench_promotion.py and bench_recipe.py do on a resume, counts once: the last one of its key).
Each table sits in docs/benchmarks.md between ``<!-- report:NAME -->`` and
``<!-- /report:NAME -->``; ``--write`` replaces what is between the markers and leaves the rest
of the page (the prose) as it is. Under each table: the machine, dates and commands the rows
record (their provenance, see provenance.py), or a pointer to benchmarks/results/README.md for
rows written before rows carried it.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PAGE = HERE.parent / "docs" / "benchmarks.md"
Row = dict[str, Any]


def rows(pattern: str, key: Callable[[Row], tuple]) -> list[Row]:
    """The rows of every results file matching ``pattern``; the last row of each key counts."""
    found: dict[tuple, Row] = {}
    for path in sorted(RESULTS.glob(pattern)):
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                row["_file"] = path.name
                found[key(row)] = row
    return list(found.values())


def _data_rank(data: str) -> tuple[int, str]:
    """The embedded tweets first (the data the ranges were calibrated on), then the others."""
    return (0 if data == "vader" else 1, data)


def _f(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _points(value: float | None, sd: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{100 * value:+.2f}" + ("" if sd is None else f" ± {100 * sd:.2f}")


def _ms(values: list[float], digits: int = 4) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {sd:.{digits}f}"


def provenance_note(found: Iterable[Row]) -> str:
    """One line: the machines, dates and commands the rows record, and the files they are in."""
    found = list(found)
    files = sorted({r["_file"] for r in found})
    machines = sorted({r["machine"] for r in found if r.get("machine")})
    dates = sorted(r["date"][:10] for r in found if r.get("date"))
    lacking = sum(1 for r in found if not r.get("date"))
    parts = [f"Rows: {', '.join(f'`results/{f}`' for f in files)}."]
    if machines:
        recorded = sum(1 for r in found if r.get("machine"))
        parts.append(
            f"Machine ({recorded} of {len(found)} row(s) record one): {'; '.join(machines)}."
        )
    if dates:
        parts.append(
            f"Measured {dates[0]}" + (f" to {dates[-1]}." if dates[-1] != dates[0] else ".")
        )
    versions = sorted(
        {json.dumps(r["versions"], sort_keys=True) for r in found if r.get("versions")}
    )
    for text in versions:
        shown = ", ".join(f"{k} {v}" for k, v in json.loads(text).items() if v)
        parts.append(f"Versions: {shown}.")
    if lacking:
        parts.append(
            f"{lacking} of {len(found)} row(s) predate recorded provenance: see "
            "`benchmarks/results/README.md`."
        )
    return "*" + " ".join(parts) + "*"


def table(header: list[str], body: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(cells) + " |" for cells in body),
    ]


# bench_promotion.py's two arms of a pair, and the first day its rows were measured with the
# defaults of today (train.cpu_dropout=fast and train.evaluate_from=0.6: earlier rows trained
# with torch's dropout masks and every evaluation)
ARMS = ("promotion", "pruned")
CURRENT_DEFAULTS_FROM = "2026-12-08"


def _pair_summary(pairs: list[tuple[Row, Row]]) -> list[str]:
    """Bullets over (promotion, successive halving) pairs: steps, the differences in the
    search's best trial and in the chosen configuration's validation and test, and how often
    each arm chose an early configuration or the first one to reach the full budget."""
    promoted = [p for p, _ in pairs]
    halved = [h for _, h in pairs]
    ratios = [p["steps"] / h["steps"] for p, h in pairs]
    lines = [
        f"- search steps: {statistics.fmean(ratios):.2f}x (mean of the ratios; "
        f"{min(ratios):.2f}x to {max(ratios):.2f}x)"
    ]
    for key, what in (
        ("search_best", "the search's best single trial"),
        ("val", "the chosen configuration's seed-mean validation"),
        ("test", "its test"),
    ):
        diffs = [
            100 * (p[key] - h[key]) for p, h in pairs if p[key] is not None and h[key] is not None
        ]
        sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
        se = sd / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0
        lines.append(
            f"- {what}: {statistics.fmean(diffs):+.2f} points (sd {sd:.2f} over the pairs, "
            f"standard error {se:.2f})"
        )
    for arm, mine in (("successive halving", halved), ("promotion", promoted)):
        early = sum(r["chosen_trial"] is not None and r["chosen_config"] <= 1 for r in mine)
        recipe = sum(bool(r["chosen_is_recipe"]) for r in mine)
        known = [r for r in mine if r.get("chosen_is_first_complete") is not None]
        first = sum(bool(r["chosen_is_first_complete"]) for r in known)
        # by chance: one of the complete configurations, each as likely
        chance = sum(1 / r["complete_configs"] for r in known if r["complete_configs"])
        placed = [r for r in mine if r["chosen_trial"] is not None]
        # the chosen configuration's place in the order the sampler drew them (0: the recipe);
        # by chance, any of a study's configurations: (configs - 1) / 2 on average
        place = statistics.fmean(r["chosen_config"] for r in placed)
        uniform = statistics.fmean((r["configs"] - 1) / 2 for r in placed)
        lines.append(
            f"- {arm}: chosen configuration 0 or 1 (the recipe or the first after it) in "
            f"{early} of {len(mine)}; the recipe chosen in {recipe} of {len(mine)}; the chosen "
            f"configuration's place in the sampler's order {place:.1f} on average (by chance: "
            f"{uniform:.1f}); the first configuration to reach the full budget chosen in "
            f"{first} of {len(known)} (by chance: {chance:.1f})"
        )
    return lines


def promotion(sweep: str) -> str:
    """bench_promotion.py: the promotion scheduler against successive halving, per study."""
    found = rows(
        f"bench_promotion.{sweep}.*jsonl", lambda r: (r["sweep"], r["data"], r["seed"], r["arm"])
    )
    # the unpruned arm has its own table (unpruned())
    found = [r for r in found if r["sweep"] == sweep and r["arm"] in ("promotion", "pruned")]
    by = {(r["data"], r["seed"], r["arm"]): r for r in found}
    pairs = sorted(
        {(d, s) for d, s, a in by if (d, s, "promotion") in by and (d, s, "pruned") in by},
        key=lambda p: (_data_rank(p[0]), p[1]),
    )

    def cells(r: Row) -> list[str]:
        steps = f"{r['steps']:,}"
        chosen = f"{r['chosen_trial']} ({r['chosen_config']})"
        return [
            steps,
            chosen,
            str(r["complete_configs"]),
            _f(r["val"]),
            _f(r["test"]),
            _points(r["gain_test"], r["gain_test_sd"]),
        ]

    header = [
        "data",
        "sampler seed",
        "promotion: search steps",
        "chosen trial (config)",
        "complete configs",
        "val (2 seeds)",
        "test",
        "gain over recipe (points)",
        "successive halving: search steps",
        "chosen",
        "complete",
        "val",
        "test",
        "gain",
    ]
    body = [
        [d, str(s), *cells(by[(d, s, "promotion")]), *cells(by[(d, s, "pruned")])] for d, s in pairs
    ]
    lines = table(header, body)
    recipes: dict[str, dict[str, list[int]]] = {}  # data -> its recipe test -> sampler seeds
    for r in sorted(found, key=lambda r: r["seed"]):
        if r.get("recipe_test") is not None:
            seeds = recipes.setdefault(r["data"], {}).setdefault(_f(r["recipe_test"]), [])
            if r["seed"] not in seeds:
                seeds.append(r["seed"])

    def recipe_line(data: str) -> str:
        values = recipes[data]
        if len(values) == 1:
            return f"{data} {next(iter(values))}"
        return f"{data} " + ", ".join(
            f"{v} (sampler seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})"
            for v, seeds in values.items()
        )

    lines.append("")
    lines.append(
        "The recipe's test accuracy (the same 2 training seeds in every study; where it "
        "differs, those rows ran on another machine): "
        + "; ".join(recipe_line(d) for d in sorted(recipes, key=_data_rank))
        + "."
    )
    if pairs:
        lines += ["", f"Over the {len(pairs)} pairs (promotion against successive halving):", ""]
        lines += _pair_summary([(by[(d, s, "promotion")], by[(d, s, "pruned")]) for d, s in pairs])
        current = [
            (d, s)
            for d, s in pairs
            if all(by[(d, s, a)].get("date", "") >= CURRENT_DEFAULTS_FROM for a in ARMS)
        ]
        if current and len(current) < len(pairs):
            lines += [
                "",
                f"Of them, the {len(current)} pairs measured with today's defaults (the fast "
                "CPU dropout and `train.evaluate_from`; measured from "
                f"{CURRENT_DEFAULTS_FROM} on):",
                "",
            ]
            lines += _pair_summary(
                [(by[(d, s, "promotion")], by[(d, s, "pruned")]) for d, s in current]
            )
    lines += ["", provenance_note(found)]
    return "\n".join(lines)


def unpruned() -> str:
    """bench_promotion.py's third arm: every trial its full budget, against the two pruned arms."""
    found = rows("bench_promotion.*jsonl", lambda r: (r["sweep"], r["data"], r["seed"], r["arm"]))
    by = {(r["sweep"], r["data"], r["seed"], r["arm"]): r for r in found}
    studies = sorted(
        {(w, d, s) for w, d, s, a in by if a == "unpruned"},
        key=lambda k: (k[0] != "lora", _data_rank(k[1]), k[2]),
    )
    arms = (("promotion", "promotion"), ("pruned", "successive halving"))

    def versus(key: tuple, arm: str) -> list[str]:
        mine, alone = by.get((*key, arm)), by[(*key, "unpruned")]
        if mine is None:
            return ["-", "-", "-"]
        return [
            f"{mine['steps']:,} ({mine['steps'] / alone['steps']:.0%})",
            _f(mine["test"]),
            _points(mine["gain_test"]),
        ]

    body = []
    for key in studies:
        alone = by[(*key, "unpruned")]
        body.append(
            [
                *key[:2],
                str(key[2]),
                f"{alone['steps']:,}",
                f"{alone['chosen_trial']} ({alone['chosen_config']})",
                str(alone["complete_configs"]),
                _f(alone["test"]),
                _points(alone["gain_test"], alone["gain_test_sd"]),
                *(cell for arm, _ in arms for cell in versus(key, arm)),
            ]
        )
    header = [
        "sweep",
        "data",
        "sampler seed",
        "no pruning: search steps",
        "chosen trial (config)",
        "complete configs",
        "test",
        "gain over recipe (points)",
        "promotion: search steps (share)",
        "test",
        "gain",
        "successive halving: search steps (share)",
        "test",
        "gain",
    ]
    lines = table(header, body)
    sweeps = list(dict.fromkeys(k[0] for k in studies))
    groups = [(f"`{sweep}`", [k for k in studies if k[0] == sweep]) for sweep in sweeps]
    if len(sweeps) > 1:
        groups.append(("Both sweeps together", studies))
    for label, mine in groups:
        lines += [
            "",
            f"{label}: each pruned arm against no pruning with the same data and sampler seed",
            "",
        ]
        for arm, name in arms:
            paired = [(by[(*k, arm)], by[(*k, "unpruned")]) for k in mine if (*k, arm) in by]
            if not paired:
                continue
            share = [p["steps"] / u["steps"] for p, u in paired]
            diffs = [
                100 * (p["test"] - u["test"])
                for p, u in paired
                if p["test"] is not None and u["test"] is not None
            ]
            spread = f"sd {statistics.stdev(diffs):.2f}" if len(diffs) > 1 else "one study"
            same = sum(p["chosen_config"] == u["chosen_config"] for p, u in paired)
            lines.append(
                f"- {name}, {len(paired)} pair(s): {statistics.fmean(share):.0%} of the unpruned "
                f"search steps; test {statistics.fmean(diffs):+.2f} points against no pruning "
                f"({spread}); the same configuration chosen in {same} of {len(paired)}"
            )
    lines += ["", provenance_note(by[(*k, "unpruned")] for k in studies)]
    return "\n".join(lines)


def evaluations() -> str:
    """Where a fine-tune's best evaluation falls (the unpruned arms of bench_promotion.py: every
    trial its whole budget, every evaluation run), and bench_evaluations.py's timings of
    ``train.evaluate_from``."""
    found = rows("bench_promotion.*jsonl", lambda r: (r["sweep"], r["data"], r["seed"], r["arm"]))
    unpruned = [r for r in found if r["arm"] == "unpruned"]
    body = []
    for sweep in sorted({r["sweep"] for r in unpruned}, key=lambda w: w != "lora"):
        curves = [
            t["curve"]
            for r in unpruned
            if r["sweep"] == sweep
            for t in r["trials"]
            if t["state"] == "COMPLETE" and t["curve"]
        ]
        total = len(curves[0])
        at = [c.index(max(c)) + 1 for c in curves]  # the first best, as the snapshot keeps it
        rungs = {2**k for k in range(8)}
        late = [k for k in range(1, total + 1) if k >= 0.6 * total - 1e-9]
        kept = [k for k in range(1, total + 1) if k in rungs or k in late]
        lost = [100 * (max(c) - max(c[k - 1] for k in kept)) for c in curves]
        lost_final = [100 * (max(c) - max(c[k - 1] for k in late)) for c in curves]
        body.append(
            [
                f"`{sweep}`",
                str(len(curves)),
                ", ".join(f"{k}: {at.count(k)}" for k in sorted(set(at))),
                f"{sum(k in late for k in at)} of {len(at)}",
                f"{sum(x > 0 for x in lost)}; {statistics.fmean(lost):.3f}",
                f"{sum(x > 0 for x in lost_final)}; {statistics.fmean(lost_final):.3f}",
            ]
        )
    lines = table(
        [
            "sweep",
            "trials (every evaluation of 12)",
            "best at evaluation: trials",
            "best in the last 40 % (8-12)",
            "search schedule (rungs, 8-12): trials whose best is lost; mean loss (points)",
            "final-stage schedule (8-12): trials; mean loss (points)",
        ],
        body,
    )
    lines += ["", provenance_note(unpruned), ""]
    timed = rows(
        "bench_evaluations*.jsonl",
        lambda r: (r["sweep"], r["schedule"], r["date"], r["wall"]),
    )
    body = []
    for sweep in sorted({r["sweep"] for r in timed}, key=lambda w: w != "lora"):
        mine = [r for r in timed if r["sweep"] == sweep]
        every = [r for r in mine if r["schedule"] == "all"]
        for schedule in ("all", "search", "final"):
            these = [r for r in mine if r["schedule"] == schedule]
            if not these:
                continue
            same = all(
                (r["best"], r["best_step"]) == (every[0]["best"], every[0]["best_step"])
                for r in these
            )
            body.append(
                [
                    f"`{sweep}`",
                    schedule,
                    " ".join(map(str, these[0]["evaluations"])),
                    str(len(these)),
                    f"{_f(these[0]['best'])} at step {these[0]['best_step']}"
                    + ("" if same else " (differs)"),
                    f"{statistics.fmean(r['train_runtime'] for r in these):.1f}",
                    f"{statistics.fmean(r['eval_s'] for r in these):.1f}",
                ]
            )
    lines += table(
        [
            "sweep",
            "schedule",
            "evaluations run",
            "runs",
            "best validation accuracy",
            "seconds in Trainer.train (mean)",
            "of them evaluating",
        ],
        body,
    )
    lines += ["", provenance_note(timed)]
    return "\n".join(lines)


def options() -> str:
    """bench_options.py: the recipe with one training option at a time, per data set; each
    option against its baseline: for ``<base>_<rest>`` the option ``<base>`` of the same data
    set (``lr_reinit`` against ``lr``: the same learning rate without the option), else the
    first option (the recipe)."""
    found = rows(
        "bench_options*.jsonl",
        lambda r: (r["sweep"], r["data"], r["option"], tuple(r["overrides"]), r["seed"]),
    )
    lines: list[str] = []
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in found:
        groups.setdefault((r["sweep"], r["data"]), []).append(r)
    body = []
    for (sweep, data), mine in sorted(groups.items(), key=lambda g: (g[0][0], _data_rank(g[0][1]))):
        names = list(dict.fromkeys((r["option"], tuple(r["overrides"])) for r in mine))
        seeds_of = {
            (name, overrides): {
                r["seed"]: r
                for r in mine
                if (r["option"], tuple(r["overrides"])) == (name, overrides)
            }
            for name, overrides in names
        }
        for name, overrides in names:
            of = seeds_of[(name, overrides)]
            paired, against = "-", "-"
            if (name, overrides) != names[0]:
                prefix = name.rsplit("_", 1)[0] if "_" in name else None
                baseline = next((n for n in names if n[0] == prefix), names[0])
                base = seeds_of[baseline]
                diffs = [100 * (of[k]["test"] - base[k]["test"]) for k in of if k in base]
                against = baseline[0]
                paired = (
                    f"{statistics.fmean(diffs):+.2f} ± "
                    f"{statistics.stdev(diffs) if len(diffs) > 1 else 0.0:.2f}"
                )
            body.append(
                [
                    sweep,
                    data,
                    name,
                    " ".join(f"`{o}`" for o in overrides) or "(the recipe)",
                    ", ".join(str(k) for k in sorted(of)),
                    _ms([r["val"] for r in of.values()]),
                    _ms([r["test"] for r in of.values()]),
                    against,
                    paired,
                ]
            )
    header = [
        "sweep",
        "data",
        "option",
        "overrides",
        "seeds",
        "validation",
        "test",
        "against",
        "test − against, seed by seed (points)",
    ]
    lines += table(header, body)
    lines += ["", provenance_note(found)]
    return "\n".join(lines)


def _gain_line(label: str, gains: list[float], target: float | None = None) -> str:
    """One summary line: the mean gain in points with its sd, worded as no gain when the mean
    is within one sd of zero, and against the target where there is one."""
    mean = statistics.fmean(gains)
    sd = statistics.stdev(gains) if len(gains) > 1 else None
    studies = f"{len(gains)} stud{'y' if len(gains) == 1 else 'ies'}"
    line = f"{label}: {_points(mean, sd)} points over {studies}"
    if sd is None:
        line += " (one study: no spread)"
    elif abs(mean) <= sd:
        line += " (within one sd of 0: no clear gain)"
    if target is not None:
        line += f"; target {100 * target:+.1f}: {'met' if mean >= target else 'not met'}"
    return line


def recipe() -> str:
    """bench_recipe.py: what each final.combine ships, against the recipe alone (its seed mean)
    and the recipe ensembled at the study's compute (the equal-compute rival)."""
    found = sorted(
        rows("bench_recipe*.jsonl", lambda r: (r["sweep"], r["data"], r["seed"])),
        key=lambda r: (r["sweep"] != "lora", _data_rank(r["data"]), r["seed"]),
    )
    body = []
    for r in found:
        rival = "recipe_ensemble_test" in r
        recipe_mean = r["recipe_test_mean"] if rival else r.get("study_recipe_test_mean")
        body.append(
            [
                r["sweep"],
                r["data"],
                str(r["seed"]),
                f"{r['steps'] - r['final_steps']:,} + {r['final_steps']:,} ({r['wall']:,.0f} s)",
                _f(r["best_test"]),
                _f(r["soup_test"]),
                _f(r["ensemble_test"]),
                f"{r['auto_ships']}: **{_f(r['auto_test'])}**",
                f"{_f(r['recipe_test_mean'])} ± {_f(r['recipe_test_sd'])} ({r['recipe_seeds']})"
                if rival
                else f"{_f(recipe_mean)} (the study's 2)",
                f"{_f(r['recipe_ensemble_test'])} ({r['recipe_steps']:,} steps, "
                f"{r['recipe_wall']:,.0f} s)"
                if rival
                else "-",
                _points(r["auto_test"] - recipe_mean if recipe_mean is not None else None),
                _points(r["auto_test"] - r["recipe_ensemble_test"] if rival else None),
            ]
        )
    lines = table(
        [
            "sweep",
            "data",
            "sampler seed",
            "steps: search + final (wall)",
            "test: best seed",
            "soup",
            "ensemble",
            "`auto` ships: test",
            "recipe alone: test mean ± sd (seeds)",
            "equal-compute rival: test",
            "shipped − recipe (points)",
            "shipped − rival (points)",
        ],
        body,
    )
    for sweep in sorted({r["sweep"] for r in found}, key=lambda s: s != "lora"):
        done = [r for r in found if r["sweep"] == sweep and "recipe_ensemble_test" in r]
        if not done:
            continue
        datas = ", ".join(sorted({r["data"] for r in done}, key=_data_rank))
        lines += [
            "",
            f"`{sweep}`, the studies with their rival ({datas}):",
            "",
        ]
        summaries = (
            ("auto_test", "recipe_test_mean", "shipped (`auto`) − recipe mean", 0.015),
            ("auto_test", "recipe_ensemble_test", "shipped (`auto`) − equal-compute rival", 0.0),
            ("best_test", "recipe_test_mean", "`best` − recipe mean", None),
            ("soup_test", "recipe_test_mean", "`soup` − recipe mean", None),
            ("ensemble_test", "recipe_test_mean", "`ensemble` − recipe mean", None),
        )
        for kind, baseline, label, target in summaries:
            gains = [r[kind] - r[baseline] for r in done if r.get(kind) is not None]
            if gains:
                lines.append("- " + _gain_line(label, gains, target))
    lines += ["", provenance_note(found)]
    return "\n".join(lines)


def _gap(gaps: list[float]) -> str:
    if len(gaps) < 2:
        return "-"
    sd = statistics.stdev(gaps)
    return f"{statistics.fmean(gaps):+.2f} ± {sd:.2f} ({sd / len(gaps) ** 0.5:.2f})"


def dropout() -> str:
    """bench_dropout.py: a recipe's whole budget with torch's dropout and the fast CPU one,
    per data set and precision: mean seconds in Trainer.train and mean best validation value
    over the training seeds (a seed's two runs differ as two seeds' do: only means compare)."""
    found = rows(
        "bench_dropout*.jsonl",
        lambda r: (r["sweep"], r["data"], r["precision"], r["seed"], r["cpu_dropout"], r["date"]),
    )
    groups: dict[tuple[str, str, str], list[Row]] = {}
    for r in found:
        groups.setdefault((r["sweep"], r["data"], r["precision"]), []).append(r)
    body = []
    for (sweep, data, precision), mine in sorted(
        groups.items(), key=lambda g: (g[0][0] != "lora", _data_rank(g[0][1]), g[0][2])
    ):
        by = {s: [r for r in mine if r["cpu_dropout"] == s] for s in ("torch", "fast")}
        if not by["torch"] or not by["fast"]:
            continue
        seconds = {s: statistics.fmean(r["train_runtime"] for r in by[s]) for s in by}
        best = {s: statistics.fmean(r["best"] for r in by[s]) for s in by}
        torch_of = {r["seed"]: r["best"] for r in by["torch"]}
        gaps = [
            100 * (r["best"] - torch_of[r["seed"]]) for r in by["fast"] if r["seed"] in torch_of
        ]
        body.append(
            [
                f"`{sweep}`",
                data,
                "fp32" if precision == "no" else "bf16 (auto)",
                f"{len(gaps)} ({min(torch_of)}-{max(torch_of)})",
                f"{seconds['torch']:.1f}",
                f"{seconds['fast']:.1f}",
                f"{seconds['fast'] / seconds['torch']:.2f}x",
                _f(best["torch"]),
                _f(best["fast"]),
                _gap(gaps),
            ]
        )
    lines = table(
        [
            "sweep",
            "data",
            "precision",
            "seeds (training)",
            "torch: s in Trainer.train",
            "fast: s",
            "fast / torch",
            "torch: best validation (mean)",
            "fast: best validation (mean)",
            "fast − torch, seed by seed: mean ± sd (standard error), points",
        ],
        body,
    )
    lines += ["", provenance_note(found)]
    return "\n".join(lines)


TABLES: dict[str, Callable[[], str]] = {
    "promotion-lora": lambda: promotion("lora"),
    "promotion-full": lambda: promotion("full"),
    "unpruned": unpruned,
    "options": options,
    "evaluations": evaluations,
    "dropout": dropout,
    "recipe": recipe,
}


def render(page: str) -> str:
    """The page with every marked table replaced by its table generated now."""
    for name, make in TABLES.items():
        pattern = re.compile(
            rf"(<!-- report:{re.escape(name)} -->\n).*?(<!-- /report:{re.escape(name)} -->)",
            re.DOTALL,
        )
        if not pattern.search(page):
            raise SystemExit(f"{PAGE}: no <!-- report:{name} --> … <!-- /report:{name} --> markers")
        body = make()
        page = pattern.sub(lambda m, body=body: f"{m.group(1)}{body}\n{m.group(2)}", page)
    return page


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--write", action="store_true", help=f"replace the tables in {PAGE.name}")
    what.add_argument("--check", action="store_true", help="exit 1 if the page is out of date")
    args = parser.parse_args()
    if not (args.write or args.check):
        for name, make in TABLES.items():
            print(f"<!-- report:{name} -->\n{make()}\n")
        return 0
    page = PAGE.read_text()
    fresh = render(page)
    if args.check:
        if fresh != page:
            print(f"{PAGE} is out of date: run benchmarks/report.py --write", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
