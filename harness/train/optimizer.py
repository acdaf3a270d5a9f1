"""Per-parameter learning rates the Trainer has no option for: layer-wise learning-rate decay
(``train.layer_lr_decay``: the top transformer layer and the head at the learning rate, each
layer below it times the decay once more, the embeddings lowest; Howard & Ruder 2018, ELECTRA's
fine-tuning) and LoRA+ (``train.loraplus_lr_ratio``: LoRA's B matrices at that multiple of A's
rate; Hayou et al. 2024). And ``train.reinit_layers``: the top transformer layers of a full
fine-tune initialised afresh (Zhang et al. 2021, "Revisiting few-sample BERT fine-tuning").
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from harness.base.errors import ConfigError

if TYPE_CHECKING:
    import torch

# a transformer block's index in a parameter name: BERT/RoBERTa "layer.N.", GPT-2 "h.N.",
# Llama/Mistral "layers.N.", T5 "block.N."
_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|h|block)\.(\d+)\.")
_EMBEDDINGS = re.compile(r"(?:^|\.)(?:embeddings|wte|wpe|embed_tokens)(?:\.|$)")


def layer_of(name: str) -> int | None:
    found = _LAYER.search(name)
    return int(found.group(1)) if found else None


def lr_scales(
    model: torch.nn.Module, layer_lr_decay: float | None, loraplus_lr_ratio: float | None
) -> dict[str, float]:
    """Trainable parameter name -> its learning rate's multiple of ``train.learning_rate``."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    layers = [i for i in map(layer_of, model.state_dict()) if i is not None]
    depth = max(layers) + 1 if layers else 0
    scales = {}
    for name in names:
        scale = 1.0
        if layer_lr_decay is not None and depth:
            index = layer_of(name)
            if index is not None:
                scale *= layer_lr_decay ** (depth - 1 - index)
            elif _EMBEDDINGS.search(name):
                scale *= layer_lr_decay**depth
        if loraplus_lr_ratio is not None and ".lora_B." in name:
            scale *= loraplus_lr_ratio
        scales[name] = scale
    return scales


def parameter_groups(
    model: torch.nn.Module,
    scales: dict[str, float],
    decay_names: set[str],
    learning_rate: float,
    weight_decay: float,
) -> list[dict[str, Any]]:  # torch's param groups: parameters, numbers
    """Optimizer groups: one per (learning rate, weight decay or not), as the Trainer groups
    (no weight decay on biases and norms)."""
    groups: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault((scales.get(name, 1.0), name in decay_names), []).append(param)
    return [
        {
            "params": params,
            "lr": learning_rate * scale,
            "weight_decay": weight_decay if decays else 0.0,
        }
        for (scale, decays), params in sorted(groups.items(), key=lambda kv: kv[0])
    ]


def reinit_top_layers(model: torch.nn.Module, count: int) -> list[int]:
    """Initialise the top ``count`` transformer layers afresh (the model's own initialiser);
    returns their indices."""
    if count == 0:
        return []
    blocks = _layer_list(model)
    if blocks is None:
        raise ConfigError(
            "train.reinit_layers",
            f"found no transformer layers to re-initialise in {type(model).__name__}",
        )
    if count > len(blocks):
        raise ConfigError(
            "train.reinit_layers",
            f"the model has {len(blocks)} layers, cannot re-initialise {count}",
        )
    init = getattr(model, "_init_weights", None)
    if init is None:
        raise ConfigError("train.reinit_layers", f"{type(model).__name__} has no initialiser")
    indices = list(range(len(blocks) - count, len(blocks)))
    for index in indices:
        blocks[index].apply(init)
    return indices


def _layer_list(model: torch.nn.Module) -> torch.nn.ModuleList | None:
    """The longest ModuleList of transformer blocks (encoder.layer, transformer.h, …)."""
    import torch

    lists = [
        module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.ModuleList)
        and name.rsplit(".", 1)[-1] in ("layer", "layers", "h", "block")
    ]
    return max(lists, key=len) if lists else None
