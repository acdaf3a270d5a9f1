"""Dropout on the CPU at a third of torch's cost (``train.cpu_dropout: fast``).

torch draws a CPU dropout mask with ``bernoulli_``: one Mersenne Twister draw and a conversion
per element, on one thread (pytorch/pytorch#138199, open). In a LoRA fine-tune of MiniLM on the
CPU that was 18 % of the training time, as much as every linear layer's forward
(docs/benchmarks.md, "Dropout on the CPU"). :class:`FastCpuDropout` draws the same mask from
16 random bits per element, four elements to one 64-bit draw of the same generator (so
``torch.manual_seed``, the Trainer's seed and a paused trial's saved RNG state govern it as
before): an element is dropped with probability ``round(p * 65536) / 65536`` (0.1 -> 0.1000061)
and the others scaled by ``1 / (1 - p)``, as torch does. The masks differ from torch's, so a
run trains along another, equally likely path. On other devices, and when not training, it is
``nn.Dropout``.
"""

from __future__ import annotations

import torch
from torch import nn

_LEVELS = 1 << 16  # 16 random bits per element
_PER_DRAW = 4  # 16-bit fields in one int64 draw


def keep_mask(shape: torch.Size, p: float, dtype: torch.dtype) -> torch.Tensor:
    """A dropout mask of ``shape`` drawn from the default CPU generator: 0 where an element is
    dropped (probability ``round(p * 65536) / 65536``), ``1 / (1 - p)`` elsewhere, in ``dtype``."""
    count = shape.numel()
    draws = torch.randint(-(1 << 63), (1 << 63) - 1, (-(-count // _PER_DRAW),), dtype=torch.int64)
    fields = draws.view(torch.int16)[:count].view(shape)  # uniform on [-32768, 32767]
    threshold = round(p * _LEVELS) - _LEVELS // 2
    mask = (fields >= threshold).to(dtype)
    return mask.div_(1 - p)


class FastCpuDropout(nn.Dropout):  # type: ignore[misc]  # torch: not followed by mypy
    """``nn.Dropout`` whose mask on the CPU comes from :func:`keep_mask` (see the module)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or self.p == 1 or input.device.type != "cpu":
            return super().forward(input)
        mask = keep_mask(input.shape, self.p, input.dtype)
        return input.mul_(mask) if self.inplace else input * mask


def use_fast_cpu_dropout(model: nn.Module) -> int:
    """Replace every ``nn.Dropout`` of ``model`` (the base model's and an adapter's, e.g. LoRA's
    ``lora_dropout``) by a :class:`FastCpuDropout` of the same probability; returns how many.
    Dropout inside fused attention kernels (``scaled_dot_product_attention``'s ``dropout_p``)
    is torch's own and stays as it is."""
    swaps = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) is nn.Dropout
    ]
    for parent, name, child in swaps:
        fast = FastCpuDropout(child.p, child.inplace)
        fast.train(child.training)
        setattr(parent, name, fast)
    return len(swaps)
