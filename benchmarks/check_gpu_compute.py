"""GPU check of the compute meter and the memory figures: a tiny BERT trained with the HF
Trainer on CUDA, with harness.train.compute.ComputeMeter among its callbacks; prints the meter's
figures (device-busy seconds from CUDA events) beside the wall time, in fp32 and bf16, then
harness.train.memory's figures (the GPU's peak) and what releasing the trial's memory freed.

    python3 benchmarks/check_gpu_compute.py      # on a machine with a GPU, torch + transformers

Loads the meter's module by its path, so that it runs where only torch and transformers are
installed (the harness's other dependencies need not be).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

ROOT = Path(__file__).resolve().parents[1]


def harness_module(name: str) -> object:
    spec = importlib.util.spec_from_file_location(
        f"harness_{name}", ROOT / "harness" / "train" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Rows(torch.utils.data.Dataset):
    def __init__(self, n: int, length: int = 64) -> None:
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(5, 1000, (n, length), generator=generator)
        self.labels = (self.ids[:, 0] % 2).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {
            "input_ids": self.ids[i],
            "attention_mask": torch.ones_like(self.ids[i]),
            "labels": self.labels[i],
        }


def meter_of(trainer: Trainer) -> object:
    return next(c for c in trainer.callback_handler.callbacks if hasattr(c, "evaluation_started"))


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    if not torch.cuda.is_available():
        print("no GPU: nothing to check")
        return 1
    meter_type = harness_module("compute").ComputeMeter
    memory = harness_module("memory")
    print(f"device: {torch.cuda.get_device_name(0)}")
    for bf16 in (False, True):
        memory.reset_peak_memory()
        torch.manual_seed(0)
        model = BertForSequenceClassification(
            BertConfig(
                vocab_size=1000,
                hidden_size=256,
                num_hidden_layers=4,
                num_attention_heads=4,
                intermediate_size=1024,
                num_labels=2,
            )
        )
        train, evaluation = Rows(4096), Rows(512)
        meter = meter_type(len(train))

        args = TrainingArguments(
            output_dir="/tmp/gpu-check",
            num_train_epochs=2,
            per_device_train_batch_size=64,
            eval_strategy="epoch",
            save_strategy="no",
            report_to="none",
            bf16=bf16,
            disable_tqdm=True,
            logging_strategy="no",
        )

        class MeteredTrainer(Trainer):
            def evaluate(self, *a, **k):
                metered = meter_of(self)
                metered.evaluation_started()
                try:
                    return super().evaluate(*a, **k)
                finally:
                    metered.evaluation_ended()

        trainer = MeteredTrainer(
            model=model, args=args, train_dataset=train, eval_dataset=evaluation, callbacks=[meter]
        )
        start = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - start
        figures = meter.figures()
        print(
            f"{'bf16' if bf16 else 'fp32'}: precision {meter.precision}, wall {wall:.2f} s, "
            f"figures {figures}"
        )
        ok = (
            0 < figures["gpu_busy_s"] < wall
            and figures["steps_trained"] == 128
            and figures["steps_planned"] == 128
            and figures["samples_seen"] == 2 * 4096
            and figures["train_flos"] > 0
            and meter.precision == ("bf16" if bf16 else "fp32")
        )
        peak = memory.memory_figures().get("gpu_peak_memory_mb", 0.0)
        del trainer, model
        held = torch.cuda.memory_reserved() / 2**20
        memory.release_memory()
        left = torch.cuda.memory_reserved() / 2**20
        print(
            f"gpu_peak_memory_mb {peak:.1f}; reserved {held:.1f} MB before release_memory, "
            f"{left:.1f} MB after"
        )
        ok = ok and peak > 0 and left < held
        print("ok" if ok else "NOT OK")
        if not ok:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
