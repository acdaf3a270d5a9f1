"""GPU speed of one training step by precision, for the model shapes the harness fine-tunes:
MiniLM-L6 (the embedded model) and BERT-base, random weights (the speed does not depend on
them), AdamW, the HF Trainer's own step (autocast for bf16/fp16 as the Trainer applies it).

    python3 benchmarks/bench_gpu_precision.py [--out rows.jsonl]   # a GPU, torch + transformers

Prints milliseconds per step (median of 30 after 10 warm-up steps) for fp32, fp32 with TF32
matmuls, bf16 and fp16 autocast; ``--out`` appends one row per model and batch shape (with its
provenance: the GPU's name, the versions) to a JSON-lines file.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from provenance import append_row
from transformers import BertConfig, BertForSequenceClassification

SHAPES = {
    "MiniLM-L6 (embedded)": dict(
        hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536
    ),
    "BERT-base": dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
    ),
}
BATCHES = [(16, 32), (32, 32), (32, 128)]  # (batch, tokens)


def step_ms(shape: dict, batch: int, tokens: int, precision: str) -> float:
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(num_labels=2, **shape)).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    ids = torch.randint(1000, 20000, (batch, tokens), device="cuda")
    labels = torch.randint(0, 2, (batch,), device="cuda")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    times = []
    for i in range(40):
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = model(input_ids=ids, labels=labels).loss
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= 10:
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="append every row (with provenance) to this JSONL")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no GPU: nothing to measure")
        return 1
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    print("| model | batch x tokens | fp32 | fp32+TF32 | bf16 | fp16 |")
    print("|---|---|---|---|---|---|")
    for name, shape in SHAPES.items():
        for batch, tokens in BATCHES:
            ms = {p: step_ms(shape, batch, tokens, p) for p in ("fp32", "tf32", "bf16", "fp16")}
            cells = [f"{value:.1f} ms" for value in ms.values()]
            if args.out:
                append_row(
                    args.out, {"model": name, "batch": batch, "tokens": tokens, "step_ms": ms}
                )
            print(f"| {name} | {batch} x {tokens} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
