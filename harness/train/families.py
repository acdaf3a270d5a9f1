"""What each model family needs from a method that peft does not work out itself.

peft resolves null target modules from its own per-family tables (``query,value`` for BERT,
``c_attn`` for GPT-2, …). Those tables lack DistilBERT, and ELECTRA for (IA)^3: the entries
below fill exactly those gaps. Prompt-learning methods need the model's sizes, which peft reads
under the usual attribute names only (DistilBERT calls them ``dim``, ``n_layers``, ``n_heads``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from peft import PeftConfig
    from transformers import PretrainedConfig

# model_type -> method -> {config field: modules}, for families peft has no default for.
TARGETS: dict[str, dict[str, dict[str, list[str]]]] = {
    "distilbert": {
        "lora": {"target_modules": ["q_lin", "v_lin"]},
        "ia3": {"target_modules": ["k_lin", "v_lin", "lin2"], "feedforward_modules": ["lin2"]},
    },
    "electra": {
        "ia3": {
            "target_modules": ["key", "value", "output.dense"],
            "feedforward_modules": ["output.dense"],
        },
    },
}
_PEFT_TYPES = {"LORA": "lora", "IA3": "ia3"}
_SIZES = {
    "token_dim": ("hidden_size", "dim", "n_embd", "d_model"),
    "num_layers": ("num_hidden_layers", "n_layers", "n_layer", "num_layers"),
    "num_attention_heads": ("num_attention_heads", "n_heads", "n_head"),
}


def resolve_targets(
    peft_config: PeftConfig, model_type: str, model_config: PretrainedConfig | None = None
) -> None:
    """Fill, in place, what peft cannot work out and the config leaves null: target modules of
    families peft has no table for, model sizes for prefix and prompt tuning."""
    if model_config is not None:
        for field, names in _SIZES.items():
            if hasattr(peft_config, field) and getattr(peft_config, field) is None:
                value = next(
                    (
                        getattr(model_config, n)
                        for n in names
                        if getattr(model_config, n, None) is not None
                    ),
                    None,
                )
                setattr(peft_config, field, value)
    method = _PEFT_TYPES.get(str(getattr(peft_config, "peft_type", "")).split(".")[-1])
    defaults = TARGETS.get(model_type, {}).get(method or "", {})
    for field, modules in defaults.items():
        if getattr(peft_config, field, None) is None:
            setattr(peft_config, field, list(modules))
