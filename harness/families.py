"""What each model family needs from a method: the modules adapters attach to.

Used when a method's ``target_modules`` is null. peft knows some families itself; this table
covers the ones the harness supports (encoders and GPT-2-style decoders) so that none is left to
a guess, and any family peft knows still works through peft's own default.
"""

from __future__ import annotations

from typing import Any

# model_type -> method -> {config field: modules}
TARGETS: dict[str, dict[str, dict[str, list[str]]]] = {
    "bert": {
        "lora": {"target_modules": ["query", "value"]},
        "ia3": {"target_modules": ["key", "value", "output.dense"],
                "feedforward_modules": ["output.dense"]},
    },
    "distilbert": {
        "lora": {"target_modules": ["q_lin", "v_lin"]},
        "ia3": {"target_modules": ["k_lin", "v_lin", "lin2"], "feedforward_modules": ["lin2"]},
    },
    "gpt2": {
        "lora": {"target_modules": ["c_attn"]},
        "ia3": {"target_modules": ["c_attn", "mlp.c_proj"], "feedforward_modules": ["mlp.c_proj"]},
    },
}
TARGETS["roberta"] = TARGETS["electra"] = TARGETS["bert"]

_PEFT_TYPES = {"LORA": "lora", "IA3": "ia3"}
# Prompt-learning configs need the model's sizes; peft reads them under the usual names only
# (DistilBERT calls them dim / n_layers / n_heads).
_SIZES = {
    "token_dim": ("hidden_size", "dim", "n_embd", "d_model"),
    "num_layers": ("num_hidden_layers", "n_layers", "n_layer", "num_layers"),
    "num_attention_heads": ("num_attention_heads", "n_heads", "n_head"),
}


def resolve_targets(peft_config: Any, model_type: str, model_config: Any = None) -> None:
    """Fill what a method needs from the family, where the config leaves it null (in place):
    target modules for LoRA and (IA)^3, model sizes for prefix and prompt tuning."""
    if model_config is not None:
        for field, names in _SIZES.items():
            if hasattr(peft_config, field) and getattr(peft_config, field) is None:
                value = next((getattr(model_config, n) for n in names
                              if getattr(model_config, n, None) is not None), None)
                setattr(peft_config, field, value)
    method = _PEFT_TYPES.get(str(getattr(peft_config, "peft_type", "")).split(".")[-1])
    defaults = TARGETS.get(model_type, {}).get(method or "", {})
    for field, modules in defaults.items():
        if getattr(peft_config, field, None) is None:
            setattr(peft_config, field, list(modules))
