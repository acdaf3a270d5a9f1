"""What `train.evaluate_from` saves: one fine-tune at a sweep's recipe, its whole budget, with
every evaluation and with the early ones skipped, as a search trial (the promotion scheduler's
rungs still evaluated) and as a final-stage run (no rung), on the embedded model and data.

    .venv/bin/python benchmarks/bench_evaluations.py [--sweep lora] [--repeats 2]
        [--out rows.jsonl] [key=value ...]

The schedules run in turn (all, search, final; then again, ``--repeats`` times), so that a
machine whose speed drifts slows each alike. The same seed trains the same weights whichever
evaluations run (an evaluation draws no random numbers), so each schedule must reach the same
best validation value at the same step unless its best evaluation was one it skipped: the
script says so. Prints one Markdown row per run: the evaluations that ran, the best value and
its step, the seconds inside ``Trainer.train``, of them evaluating (the Trainer's
``eval_runtime``, which does not drift with the machine between runs as totals do), and the
wall time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from provenance import append_row

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="lora", help="a sweep name (conf/sweep/NAME.yaml)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the three schedules")
    parser.add_argument("--evaluate-from", type=float, default=0.6, help="the skipping schedules'")
    parser.add_argument("--out", type=Path, help="append every row (with provenance) to this JSONL")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides")
    args = parser.parse_args()

    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from harness.base.progress import configure_logging
    from harness.study import prepare_study, validate_config
    from harness.study.promotion import PromotionPruner
    from harness.train.callbacks import OnEvaluate
    from harness.train.finetune import finetune

    configure_logging()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"+sweep={args.sweep}", *args.overrides])
    prepared = prepare_study(cfg, validate_config(cfg))
    pruner = instantiate(cfg.pruner)
    rungs = pruner.rungs() if isinstance(pruner, PromotionPruner) else None
    schedules = {
        "all": (0.0, None),  # every evaluation (as before train.evaluate_from)
        "search": (args.evaluate_from, rungs),  # a search trial: the rungs, then the late ones
        "final": (args.evaluate_from, frozenset()),  # a final-stage run: the late ones only
    }
    recipe = dict(cfg.recipe or {})
    print("| schedule | evaluations run | best | at step | train s | of it evaluating | wall s |")
    print("|---|---|---|---|---|---|---|")
    rows: list[dict] = []
    for _ in range(args.repeats):
        for name, (evaluate_from, decisions) in schedules.items():
            trial_cfg = prepared.space.apply(cfg, {**recipe, "train.evaluate_from": evaluate_from})
            ran: list[int] = []
            spent: list[float] = []  # each evaluation's seconds (the Trainer's eval_runtime)
            start = time.perf_counter()
            result = finetune(
                trial_cfg,
                prepared.base,
                prepared.datasets,
                prepared.metrics,
                callbacks=[
                    OnEvaluate(
                        lambda i, m, ran=ran, spent=spent: (
                            ran.append(i),
                            spent.append(float(m["eval_runtime"])),
                        )
                    )
                ],
                decisions=decisions,
            )
            wall = time.perf_counter() - start
            row = {
                "sweep": args.sweep,
                "schedule": name,
                "evaluate_from": evaluate_from,
                "evaluations": ran,
                "best": result.value,
                "best_step": result.best_step,
                "steps": result.steps,
                "train_runtime": result.train_runtime,
                "eval_s": sum(spent),
                "wall": wall,
                "overrides": args.overrides,
            }
            rows.append(row)
            print(
                f"| {name} | {' '.join(map(str, ran))} | {result.value:.4f} | "
                f"{result.best_step} | {result.train_runtime:.1f} | {sum(spent):.1f} | "
                f"{wall:.1f} |",
                flush=True,
            )
            if args.out:
                append_row(args.out, row)
    full = [r for r in rows if r["schedule"] == "all"]
    for name in ("search", "final"):
        these = [r for r in rows if r["schedule"] == name]
        share = statistics.fmean(r["train_runtime"] for r in these) / statistics.fmean(
            r["train_runtime"] for r in full
        )
        same = all(
            (r["best"], r["best_step"]) == (full[0]["best"], full[0]["best_step"]) for r in these
        )
        saved = statistics.fmean(r["eval_s"] for r in full) - statistics.fmean(
            r["eval_s"] for r in these
        )
        print(
            f"{name}: {share:.2f}x the time of every evaluation (evaluating {saved:.1f} s less, "
            f"{saved / statistics.fmean(r['train_runtime'] for r in full):.0%} of the run); "
            f"{'the same' if same else 'NOT the same'} best evaluation"
        )


if __name__ == "__main__":
    main()
