"""Replay Optuna's pruners over the validation curves of unpruned sweeps: what each would have
saved, and what it would have cost in best validation accuracy, without training again.

    .venv/bin/python benchmarks/replay_pruners.py --jsonl results.jsonl   # bench_peer.py --out rows
    .venv/bin/python benchmarks/replay_pruners.py --jsonl rows.jsonl --sweep lora  # bench_promotion
    .venv/bin/python benchmarks/replay_pruners.py --storage sqlite:///sweeps/x.db --study NAME

Input: sweeps run with ``pruner=none`` (every trial trains its whole budget), from the rows
``benchmarks/bench_peer.py --mode pruning --arms unpruned --out FILE`` writes, or from a study.
Each pruner sees the trials in their order, each evaluation reported as the harness reports it
(step = evaluation number) and never asked at the last one; a pruned trial counts the
evaluations it ran. Prints per pruner: the steps trained as a share of the unpruned sweep's
(mean over the sweeps, and each) and the best validation accuracy lost (points). One order of
trials is one draw: the sweep's first trials meet no competition at the rungs and run to their
end, so whether the best trial came early decides much of the result. ``--orders N`` replays
each sweep in N orders (the order it ran in and N-1 seeded shuffles) and averages them, the
expected figure of a sweep that drew these trials. The sampler is not replayed: in a real
pruned sweep a model-based sampler (TPE) sees pruned trials and samples differently, so confirm
a choice with real sweeps.

The promotion scheduler (``pruner=promotion``: pause at a rung, continue later from the saved
state) is replayed too, with the harness's own pruner and queueing: a continued trial ends as
the uninterrupted one does (tests/train/test_pause.py), so its curve is the unpruned curve.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
from pathlib import Path

PRUNERS = {  # label: (class name, keyword arguments)
    "successive halving, min 1, factor 3 (the other sweeps' default)": (
        "SuccessiveHalvingPruner",
        {"min_resource": 1, "reduction_factor": 3},
    ),
    "successive halving, min 1, factor 4": (
        "SuccessiveHalvingPruner",
        {"min_resource": 1, "reduction_factor": 4},
    ),
    "successive halving, min 2, factor 3": (
        "SuccessiveHalvingPruner",
        {"min_resource": 2, "reduction_factor": 3},
    ),
    "successive halving, min 3, factor 4": (
        "SuccessiveHalvingPruner",
        {"min_resource": 3, "reduction_factor": 4},
    ),
    "successive halving, min 2, factor 4": (
        "SuccessiveHalvingPruner",
        {"min_resource": 2, "reduction_factor": 4},
    ),
    "hyperband, min 1, factor 3": (
        "HyperbandPruner",
        {"min_resource": 1, "max_resource": "auto", "reduction_factor": 3},
    ),
    "median, 1 startup, warm-up 2": ("MedianPruner", {"n_startup_trials": 1, "n_warmup_steps": 2}),
    "median, 2 startup, warm-up 2 (pruner=median)": (
        "MedianPruner",
        {"n_startup_trials": 2, "n_warmup_steps": 2},
    ),
    "median, 1 startup, warm-up 0": ("MedianPruner", {"n_startup_trials": 1, "n_warmup_steps": 0}),
    "percentile keeps best 33 %, 1 startup, warm-up 0": (
        "PercentilePruner",
        {"percentile": 33.0, "n_startup_trials": 1, "n_warmup_steps": 0},
    ),
    "percentile keeps best 25 %, 1 startup, warm-up 0": (
        "PercentilePruner",
        {"percentile": 25.0, "n_startup_trials": 1, "n_warmup_steps": 0},
    ),
    "percentile keeps best 33 %, 1 startup, warm-up 2": (
        "PercentilePruner",
        {"percentile": 33.0, "n_startup_trials": 1, "n_warmup_steps": 2},
    ),
    "successive halving, min 1, factor 2 (the lora sweep's default)": (
        "SuccessiveHalvingPruner",
        {"min_resource": 1, "reduction_factor": 2},
    ),
}


# one cut only (interval_steps beyond the budget): judged at one evaluation, then the survivors
# run to the end (Optuna's percentile pruner compares with the completed trials)
PRUNERS.update(
    {
        f"one cut at evaluation {at}, keeps best {keep} %": (
            "PercentilePruner",
            {
                "percentile": float(keep),
                "n_startup_trials": 1,
                "n_warmup_steps": at,
                "interval_steps": 1000,
            },
        )
        for at, keep in ((1, 25), (1, 33), (1, 50), (2, 33), (3, 33))
    }
)
# bootstrap_count k: a trial that reaches a rung before k others did stops there (the first
# trials no longer run to the end for want of competition)
PRUNERS.update(
    {
        f"successive halving, min {low}, factor {factor}, bootstrap {k}": (
            "SuccessiveHalvingPruner",
            {"min_resource": low, "reduction_factor": factor, "bootstrap_count": k},
        )
        for low, factor, k in ((1, 3, 1), (1, 4, 1), (1, 4, 2), (2, 4, 1))
    }
)
# rungs past the first: min_early_stopping_rate 1 judges at evaluations 3, 9 (factor 3)
PRUNERS.update(
    {
        f"successive halving, min 1, factor {factor}, first rung skipped": (
            "SuccessiveHalvingPruner",
            {"min_resource": 1, "reduction_factor": factor, "min_early_stopping_rate": 1},
        )
        for factor in (2, 3)
    }
)


def replay(
    curves: list[list[float]], pruner, signals: list[list[float]] | None = None
) -> tuple[int, float | None]:
    """Steps (evaluations) trained and the best value of the complete trials under a pruner.

    ``signals`` (one per trial, as long as its curve): what the pruner sees instead of the
    curve (e.g. the negated validation loss); the trial's value is still its curve's best.
    """
    import optuna

    study = optuna.create_study(direction="maximize", pruner=pruner)
    trained, best = 0, None
    for i, curve in enumerate(curves):
        seen = signals[i] if signals else curve
        trial = study.ask()
        for step, value in enumerate(seen, 1):
            trial.report(value, step)
            if step < len(curve) and trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                trained += step
                break
        else:
            study.tell(trial, max(curve))
            trained += len(curve)
            best = max(curve) if best is None else max(best, max(curve))
    return trained, best


PROMOTION = {  # label: PromotionPruner keyword arguments
    "promotion, factor 2 (pruner=promotion)": {"reduction_factor": 2},
    "promotion, factor 3 (pruner=promotion_third)": {"reduction_factor": 3},
    "promotion, factor 2, 3 complete": {"reduction_factor": 2, "min_complete": 3},
    "promotion, factor 2, 4 complete": {"reduction_factor": 2, "min_complete": 4},
    "promotion, factor 3, 3 complete": {"reduction_factor": 3, "min_complete": 3},
    "promotion, factor 3, 4 complete": {"reduction_factor": 3, "min_complete": 4},
    "promotion, factor 2, first rung at 2": {"reduction_factor": 2, "min_early_stopping_rate": 1},
    "promotion, factor 3, first rung at 3": {"reduction_factor": 3, "min_early_stopping_rate": 1},
}


def replay_promotion(
    curves: list[list[float]], kwargs: dict, signals: list[list[float]] | None = None
) -> tuple[int, float | None]:
    """:func:`replay` for the promotion scheduler: one worker takes a due promotion before a
    new configuration; at the end the best paused ones finish (``min_complete``)."""
    import tempfile

    import optuna

    from harness.records import schema, trials
    from harness.study.paused import PausedStates
    from harness.study.promotion import PromotionPruner, queue_promotions

    pruner = PromotionPruner(**kwargs)
    seen = signals or curves
    with tempfile.TemporaryDirectory() as folder:
        states = PausedStates(folder, None)
        study = optuna.create_study(
            direction="maximize", pruner=pruner, storage=f"sqlite:///{folder}/replay.db"
        )
        trained = 0

        def objective(trial):
            nonlocal trained
            x = trial.suggest_int("x", 0, len(curves) - 1)
            start = 0
            source = trial.user_attrs.get(schema.CONTINUES_ATTR)
            if source is not None:
                for step, value in sorted(study.trials[source].intermediate_values.items()):
                    trial.report(value, step)
                start = max(study.trials[source].intermediate_values)
            for step in range(start + 1, len(curves[x]) + 1):
                trained += 1
                trial.report(seen[x][step - 1], step)
                if step < len(curves[x]) and trial.should_prune():
                    states.partial(trial.number).mkdir()
                    states.commit(trial.number)
                    trial.set_user_attr(schema.PAUSED_ATTR, {"evaluation": step})
                    raise optuna.TrialPruned()
            return max(curves[x])

        started = 0
        while True:
            counts = trials.count(study)
            done = started >= len(curves)
            queue_promotions(study, pruner, states, 0, at_end=done and not counts["running"])
            if not any(t.state.name == "WAITING" for t in study.trials):
                if done:
                    break
                study.enqueue_trial({"x": started})
                started += 1
            study.optimize(objective, n_trials=1)
        complete = [t.value for t in study.trials if t.state.name == "COMPLETE"]
    return trained, max(complete) if complete else None


def replay_order(
    ran: list[tuple[list[float], list | None]], index: int, order: int, signal: str, pruner
) -> tuple[float, float]:
    """One order of a sweep's trials (0: as it ran; else a shuffle seeded by sweep and order)
    under a pruner: the share of the steps trained, and the best value lost (points)."""
    sweep = list(ran)
    if order:
        random.Random(1000 * index + order).shuffle(sweep)
    curves = [c for c, _ in sweep]
    signals = (
        [s for _, s in sweep]
        if signal == "loss"
        else [list(itertools.accumulate(c, max)) for c in curves]
        if signal == "best"
        else None
    )
    trained, best = (
        replay_promotion(curves, pruner, signals)
        if isinstance(pruner, dict)
        else replay(curves, pruner, signals)
    )
    return (
        trained / sum(len(c) for c in curves),
        100 * (max(max(c) for c in curves) - (best or 0.0)),
    )


def sweeps_from(args: argparse.Namespace) -> list[list[tuple[list[float], list | None]]]:
    """Each unpruned sweep as its trials' (curve, pruning signal or None), in trial order."""
    from harness.base.storages import load_study  # journal:// and grpc:// too

    if args.jsonl:
        rows = [json.loads(line) for line in args.jsonl.read_text().splitlines() if line]
        key = "loss_curve" if args.signal == "loss" else "curve"
        unpruned = [
            r for r in rows if "pruner=none" in r.get("system", "") or r.get("arm") == "unpruned"
        ]
        if args.sweep:
            unpruned = [r for r in unpruned if r.get("sweep") == args.sweep]
        sweeps = [
            [
                (t["curve"], [-v for v in t["loss_curve"]] if key == "loss_curve" else None)
                for t in sorted(r["trials"], key=lambda t: t["number"])
                if t["state"] == "COMPLETE"
            ]
            for r in unpruned
        ]
        return sweeps
    out = []
    for name in args.study:
        study = load_study(args.storage, name)
        for trial in study.trials:
            steps = sorted(trial.intermediate_values)
            if trial.state.name == "COMPLETE" and steps != list(range(1, len(steps) + 1)):
                raise SystemExit(
                    f"{name}: trial {trial.number} skipped evaluations (steps {steps}): replay "
                    "needs every one; run the unpruned sweep with train.evaluate_from=0"
                )
        out.append(
            [
                ([t.intermediate_values[k] for k in sorted(t.intermediate_values)], None)
                for t in study.trials
                if t.state.name == "COMPLETE"
            ]
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jsonl", type=Path, help="rows written by bench_peer.py --out")
    parser.add_argument("--storage", help="an Optuna storage URL (with --study)")
    parser.add_argument("--study", nargs="*", default=[], help="unpruned studies to replay")
    parser.add_argument(
        "--orders",
        type=int,
        default=1,
        help="replay each sweep in this many trial orders (the first as run)",
    )
    parser.add_argument(
        "--signal",
        choices=("metric", "best", "loss"),
        default="metric",
        help="what the pruner sees: the curve itself, its best so far, or the "
        "negated validation loss (--jsonl rows with loss curves)",
    )
    parser.add_argument("--sweep", help="--jsonl rows of bench_promotion.py: this sweep only")
    parser.add_argument("--only", help="replay only the candidates whose label contains this")
    args = parser.parse_args()
    if not args.jsonl and not (args.storage and args.study):
        parser.error("give --jsonl FILE, or --storage URL --study NAME [NAME ...]")

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    sweeps = sweeps_from(args)
    print(
        f"{len(sweeps)} unpruned sweep(s), {[len(s) for s in sweeps]} trials, "
        f"{args.orders} order(s) each\n"
    )
    print("| pruner | steps vs unpruned (mean) | each | best val acc lost, points (mean) | each |")
    print("|---|---|---|---|---|")
    candidates = {
        label: (cls, kwargs)
        for label, (cls, kwargs) in PRUNERS.items()
        if args.only is None or args.only in label
    }
    candidates.update(
        {
            label: ("promotion", kwargs)
            for label, kwargs in PROMOTION.items()
            if args.only is None or args.only in label
        }
    )
    for label, (cls, kwargs) in candidates.items():
        shares, losses = [], []
        for index, ran in enumerate(sweeps):
            orders = [
                replay_order(
                    ran,
                    index,
                    order,
                    args.signal,
                    kwargs if cls == "promotion" else getattr(optuna.pruners, cls)(**kwargs),
                )
                for order in range(args.orders)
            ]
            shares.append(statistics.mean(share for share, _ in orders))
            losses.append(statistics.mean(lost for _, lost in orders))
        print(
            f"| {label} | {statistics.mean(shares):.1%} | "
            f"{' '.join(f'{x:.0%}' for x in shares)} | {statistics.mean(losses):.2f} | "
            f"{' '.join(f'{x:.1f}' for x in losses)} |"
        )


if __name__ == "__main__":
    main()
