"""What one fine-tune cost: steps trained against the steps its full budget plans, training
samples seen, training FLOPs (the Trainer's ``total_flos``), process CPU and (on a GPU)
device-busy seconds, and the precision it trained in (the trial's wall time is its caller's).

:class:`ComputeMeter` is a Trainer callback; its figures are complete when training ended and
partial (what was spent up to that point) when the trial failed. A run continued from a paused
state counts its own steps only (from the step it resumed at), and plans the rest of the budget.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from harness.train.callbacks import HarnessCallback

if TYPE_CHECKING:
    import torch
    from transformers import TrainerControl as Control
    from transformers import TrainerState as RunState
    from transformers import TrainingArguments as Args


class ComputeMeter(HarnessCallback):
    """Counts a fine-tune's compute while it trains (create one per trial)."""

    def __init__(self, train_size: int) -> None:
        self.train_size = train_size
        self.steps = 0  # optimizer steps trained (by this run: a continuation's own)
        self.planned = 0  # optimizer steps of the full budget (its epochs, batch size, data)
        self.start = 0  # the global step training started (or resumed) at
        self.steps_per_epoch = 0
        self.samples_per_step = 0
        self.flos: float | None = None  # set when training ended (the Trainer's total_flos)
        self.precision = "fp32"
        self._cpu = time.process_time()  # from the trial's start: model building counts too
        # CUDA events around each step and evaluation
        self._spans: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self._open: torch.cuda.Event | None = None

    # ------------------------------------------------------------------ Trainer events

    def on_train_begin(self, args: Args, state: RunState, control: Control, **_: object) -> None:
        self.start = int(state.global_step)
        self.planned = int(state.max_steps) - self.start
        self.samples_per_step = (
            int(args.per_device_train_batch_size)
            * max(1, int(args.gradient_accumulation_steps))
            * max(1, int(args.world_size))
        )
        self.steps_per_epoch = max(1, math.ceil(self.train_size / self.samples_per_step))
        self.precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"

    def on_step_begin(self, args: Args, state: RunState, control: Control, **_: object) -> None:
        self._begin_span()

    def on_step_end(self, args: Args, state: RunState, control: Control, **_: object) -> None:
        self._end_span()
        self.steps = int(state.global_step) - self.start

    def on_train_end(self, args: Args, state: RunState, control: Control, **_: object) -> None:
        self.steps = int(state.global_step) - self.start
        self.flos = float(state.total_flos)

    def evaluation_started(self) -> None:
        """Called by the Trainer before an evaluation (device time counts evaluations too)."""
        self._begin_span()

    def evaluation_ended(self) -> None:
        self._end_span()

    # ------------------------------------------------------------------ figures

    @property
    def samples(self) -> int:
        """Training samples seen: whole epochs of the data, plus the batches of the last one
        (a continuation: from the step it resumed at)."""
        if not self.steps_per_epoch:
            return 0
        return self._samples_at(self.start + self.steps) - self._samples_at(self.start)

    def _samples_at(self, step: int) -> int:
        epochs, rest = divmod(step, self.steps_per_epoch)
        return epochs * self.train_size + min(rest * self.samples_per_step, self.train_size)

    def figures(self) -> dict[str, float]:
        """The trial's compute so far (``train_flos`` once training ended)."""
        out = {
            "steps_trained": self.steps,
            "steps_planned": self.planned,
            "samples_seen": self.samples,
            "cpu_time_s": round(time.process_time() - self._cpu, 3),
        }
        if self.flos is not None:
            out["train_flos"] = self.flos
        busy = self._device_busy()
        if busy is not None:
            out["gpu_busy_s"] = round(busy, 3)
        return out

    # ------------------------------------------------------------------ device time

    def _begin_span(self) -> None:
        import torch

        if torch.cuda.is_available() and self._open is None:
            self._open = torch.cuda.Event(enable_timing=True)
            self._open.record()

    def _end_span(self) -> None:
        import torch

        if self._open is not None:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._spans.append((self._open, end))
            self._open = None

    def _device_busy(self) -> float | None:
        """Seconds the GPU spent inside training steps and evaluations (CUDA events, read once
        they have completed); None without a GPU."""
        import torch

        if not torch.cuda.is_available():
            return None
        torch.cuda.synchronize()
        return float(sum(start.elapsed_time(end) for start, end in self._spans)) / 1000.0
