"""Benchmark: the harness's default sweeps against HF ``Trainer.hyperparameter_search``, or
against themselves without pruning, on the same data and embedded model, in one process.

    .venv/bin/python benchmarks/bench_peer.py [--trials 8] [--seeds 1,2,3] [--sweeps lora,full]
    .venv/bin/python benchmarks/bench_peer.py --mode pruning [--trials 12] [--seeds 1,2,3]
    .venv/bin/python benchmarks/bench_peer.py ... [--out results.jsonl] [--set key=value ...]

``--mode peer`` (default): per seed, the harness's ``lora`` and ``full`` sweeps, then HF's search
(optuna backend, TPE with the same seed, MedianPruner, LoRA built in ``model_init``: r 8, alpha 16,
dropout 0.1, since HF searches TrainingArguments fields only; learning rate and warm-up searched
over the lora sweep's ranges; ``compute_objective`` the validation accuracy; the same trial count,
epochs and evaluations; in fp32, the Trainer's default, or ``--hf-precisions fp32,bf16`` for
bf16 autocast too, while the harness trains in what its ``train.mixed_precision=auto`` picks).
``--mode pruning``: each sweep with its own pruner and with
``pruner=none``, same sampler seed. Prints per system: wall time, best validation accuracy, the
chosen model's test accuracy, training steps, compute saved by pruning; then the means over the
seeds. ``--out`` appends every row, with each trial's validation curve, to a JSON-lines file
(``--arms unpruned`` or ``--arms pruned`` then runs one side of the pruning comparison).
``--set`` adds Hydra overrides to every system (e.g. ``data.max_train_samples=200`` for a smoke
run). HF keeps no model: its best hyperparameters are trained once more to score the test split
(that time is shown apart, not added to its wall time). Stores go to a scratch folder.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

from provenance import provenance

ROOT = Path(__file__).resolve().parents[1]


def scratch_stores(name: str, folder: Path) -> list[str]:
    """Overrides that put a benchmark study's every store under ``folder`` (no report, no
    progress bar): each study measured in stores of its own."""
    return [
        f"study.storage=sqlite:///{folder}/optuna.db",
        f"study.output_dir={folder}/{name}",
        f"tracking.uri=sqlite:///{folder}/ml.db",
        f"tracking.artifact_location={folder}/mlruns",
        "report.enabled=false",
        "display.progress=false",
    ]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def harness_sweep(sweep: str, seed: int, trials: int, folder: Path, extra: list[str]) -> dict:
    """One harness sweep in its own stores: wall, best validation, test accuracy, steps."""
    from harness.base.storages import load_study  # journal:// and grpc:// too
    from harness.export.predict import accuracy_on
    from harness.records.compute import study_compute
    from harness.study import run_sweep
    from harness.train.checkpoints import load_checkpoint

    name = re.sub(r"[^A-Za-z0-9-]+", "_", f"peer-{sweep}-{seed}-{'-'.join(extra) or 'default'}")
    cfg = compose(
        [
            f"+sweep={sweep}",
            f"study.name={name}",
            f"study.n_trials={trials}",
            f"sampler.seed={seed}",
            *scratch_stores(name, folder),
            *extra,
        ]
    )
    start = time.perf_counter()
    summary = run_sweep(cfg)
    wall = time.perf_counter() - start
    study = load_study(str(cfg.study.storage), name)
    compute = study_compute(study)
    curves = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            # the study metric at every evaluation (what the pruner saw may be the loss)
            "curve": val_curve(cfg, t, f"val_{cfg.study.metric}"),
            "loss_curve": val_curve(cfg, t, "val_loss"),
        }
        for t in study.trials
    ]
    test = None
    if summary.best_checkpoint:
        texts, labels = test_split(cfg)
        model, tokenizer = load_checkpoint(summary.best_checkpoint)
        test = accuracy_on(model, tokenizer, texts, labels, int(cfg.data.max_length))
    return {
        "system": f"harness {sweep}" + (f" ({' '.join(extra)})" if extra else ""),
        "wall": wall,
        "best": summary.best_value,
        "test": test,
        "steps": compute.totals.get("steps_trained", 0),
        "saved": compute.saved_by_pruning,
        "extra": "",
        "trials": curves,
    }


def val_curve(cfg, trial, metric: str) -> list[float]:
    """A validation metric of the trial at every evaluation, from its MLflow run."""
    from mlflow.tracking import MlflowClient

    from harness.records import schema

    run_id = trial.user_attrs.get(schema.RUN_ID_ATTR)
    if not run_id:
        return []
    history = MlflowClient(str(cfg.tracking.uri)).get_metric_history(run_id, metric)
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def test_split(cfg) -> tuple[list[str], list[int]]:
    from harness.data import load_labelled_data

    data = load_labelled_data(cfg.data)
    split = data.splits["test"]
    return list(split["text"]), list(split["label"])


def hf_search(seed: int, trials: int, folder: Path, extra: list[str], bf16: bool = False) -> dict:
    """HF Trainer.hyperparameter_search with LoRA in model_init (what a user would write)."""
    import optuna
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from harness.export.predict import accuracy_on
    from harness.study import prepare_study, validate_config

    cfg = compose(["+sweep=lora", *extra])
    prepared = prepare_study(cfg, validate_config(cfg))
    names = prepared.label_names
    path = str(cfg.model.name_or_path)
    space = cfg.search_space
    evals = int(cfg.train.evals_per_epoch) * int(cfg.train.num_train_epochs)
    batch = int(cfg.train.per_device_train_batch_size)
    steps_per_epoch = -(-len(prepared.datasets["train"]) // batch)
    eval_steps = max(1, -(-steps_per_epoch * int(cfg.train.num_train_epochs) // evals))

    def model_init(trial=None):
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=len(names),
            id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)},
        )
        lora = LoraConfig(
            task_type="SEQ_CLS",
            r=8,
            lora_alpha=16,
            lora_dropout=0.1,
            target_modules=["query", "value"],
        )
        return get_peft_model(model, lora)

    def hp_space(trial):
        lr = space["train.learning_rate"]
        out = {"learning_rate": trial.suggest_float("learning_rate", lr.low, lr.high, log=True)}
        if "train.warmup_steps" in space:  # searched where the lora sweep searches it
            warm = space["train.warmup_steps"]
            out["warmup_steps"] = trial.suggest_float("warmup_steps", warm.low, warm.high)
        return out

    steps: dict[int, tuple[int, int]] = {}

    class CountSteps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            number = len(steps_log)
            steps[number] = (state.global_step, state.max_steps)

        def on_train_begin(self, args, state, control, **kwargs):
            steps_log.append(1)

    steps_log: list[int] = []
    args = TrainingArguments(
        output_dir=str(folder / "hf"),
        num_train_epochs=float(cfg.train.num_train_epochs),
        per_device_train_batch_size=int(cfg.train.per_device_train_batch_size),
        per_device_eval_batch_size=int(cfg.train.per_device_eval_batch_size),
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="no",
        report_to="none",
        logging_strategy="no",
        seed=int(cfg.train.seed),
        disable_tqdm=True,
        **({"bf16": True, "use_cpu": True} if bf16 else {}),
    )
    trainer = Trainer(
        model_init=model_init,
        args=args,
        train_dataset=prepared.datasets["train"],
        eval_dataset=prepared.datasets["validation"],
        processing_class=prepared.base.tokenizer,
        data_collator=DataCollatorWithPadding(prepared.base.tokenizer),
        compute_metrics=prepared.metrics,
        callbacks=[CountSteps()],
    )
    start = time.perf_counter()
    best = trainer.hyperparameter_search(
        direction="maximize",
        backend="optuna",
        hp_space=hp_space,
        n_trials=trials,
        compute_objective=lambda metrics: metrics["eval_accuracy"],
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(),
    )
    wall = time.perf_counter() - start
    trained = sum(s for s, _ in steps.values())
    planned = sum(p for _, p in steps.values())
    # HF keeps no model: train its best hyperparameters once more to score the test split
    retrain = time.perf_counter()
    for key, value in best.hyperparameters.items():
        setattr(trainer.args, key, value)
    trainer.model = model_init()
    trainer.train()
    texts, labels = test_split(cfg)
    test = accuracy_on(
        trainer.model.eval(), prepared.base.tokenizer, texts, labels, int(cfg.data.max_length)
    )
    return {
        "system": f"HF hyperparameter_search (LoRA, {'bf16' if bf16 else 'fp32'})",
        "wall": wall,
        "best": best.objective,
        "test": test,
        "steps": trained,
        "saved": 1 - trained / planned if planned else 0,
        "extra": f"re-train for the test score {time.perf_counter() - retrain:.0f} s",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("peer", "pruning"), default="peer")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seeds", default="1", help="comma-separated sampler seeds")
    parser.add_argument("--sweeps", default="lora,full", help="harness sweeps to run")
    parser.add_argument(
        "--arms",
        default="pruned,unpruned",
        help="--mode pruning: which sides to run (pruned, unpruned)",
    )
    parser.add_argument("--set", nargs="*", default=[], help="Hydra overrides for every system")
    parser.add_argument(
        "--hf-precisions",
        default="fp32",
        help="HF's search in fp32 (its default), bf16 (autocast) or fp32,bf16",
    )
    parser.add_argument("--out", type=Path, help="append every row (with curves) to this file")
    args = parser.parse_args()

    from harness.base.progress import configure_logging

    configure_logging()
    rows: list[dict] = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        with tempfile.TemporaryDirectory(prefix="bench-peer-") as scratch:
            folder = Path(scratch)
            runs = []  # what to run for this seed, in order
            for sweep in args.sweeps.split(","):
                if args.mode == "peer" or "pruned" in args.arms.split(","):
                    runs.append(partial(harness_sweep, sweep, seed, args.trials, folder, args.set))
                if args.mode == "pruning" and "unpruned" in args.arms.split(","):
                    runs.append(
                        partial(
                            harness_sweep,
                            sweep,
                            seed,
                            args.trials,
                            folder,
                            # every evaluation: the replay needs the whole curves
                            [*args.set, "pruner=none", "train.evaluate_from=0"],
                        )
                    )
            if args.mode == "peer":
                runs += [
                    partial(hf_search, seed, args.trials, folder, args.set, bf16=p == "bf16")
                    for p in args.hf_precisions.split(",")
                ]
            for run in runs:
                result = run()
                rows.append({**result, "seed": seed})
                if args.out:
                    with args.out.open("a") as out:
                        out.write(json.dumps({**rows[-1], **provenance()}) + "\n")
        print_table(rows)
    print("\nMeans over seeds:")
    means = []
    for system in dict.fromkeys(r["system"] for r in rows):
        mine = [r for r in rows if r["system"] == system]
        means.append(
            {
                "system": system,
                "seed": "mean",
                **{
                    k: statistics.mean(r[k] for r in mine if r[k] is not None)
                    for k in ("wall", "best", "test", "steps", "saved")
                    if any(r[k] is not None for r in mine)
                },
                "extra": "",
            }
        )
    print_table(means)


def print_table(rows: list[dict]) -> None:
    print("\n| system | seed | wall s | best val acc | test acc | steps | saved by pruning | |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        test = "-" if r.get("test") is None else f"{r['test']:.4f}"
        print(
            f"| {r['system']} | {r['seed']} | {r['wall']:.0f} | {r['best']:.4f} | {test} | "
            f"{r['steps']:,.0f} | {r['saved']:.1%} | {r.get('extra', '')} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
