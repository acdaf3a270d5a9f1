"""The model side of a study: tokenizer and base weights read once, a fresh copy per trial.

A trial never trains the base model itself: it trains a deep copy, optionally wrapped by a
``peft`` adapter built from ``peft.config`` (instantiated by its ``_target_``).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from harness.base.errors import ConfigError, first_line
from harness.base.objects import build
from harness.train.families import resolve_targets

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


@dataclass
class BaseModel:
    """Pretrained weights with a classification head for the study's labels."""

    model: PreTrainedModel  # trials train deep copies of it
    tokenizer: PreTrainedTokenizerBase
    # Modules the checkpoint did not provide (the new head, and e.g. a missing pooler): they are
    # randomly initialised, so adapters must train and save them too.
    new_modules: list[str] = field(default_factory=list)


def load_tokenizer(model_cfg: DictConfig) -> PreTrainedTokenizerBase:
    """The model's tokenizer; models without a pad token (GPT-2) pad with their EOS token."""
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer, model_cfg)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError(
                "model.name_or_path",
                f"the tokenizer of '{model_cfg.name_or_path}' has neither a pad nor an EOS token",
            )
        tokenizer.pad_token = tokenizer.eos_token
        log.info("the tokenizer has no pad token: padding with its EOS token")
    return tokenizer


def load_base_model(
    model_cfg: DictConfig, label_names: list[str], tokenizer: PreTrainedTokenizerBase, seed: int
) -> BaseModel:
    """Read the pretrained weights once and put a head for ``label_names`` on them.

    The new head is initialised under ``seed``, so every trial starts from the same weights.
    """
    from transformers import AutoModelForSequenceClassification, set_seed

    set_seed(seed)
    model, info = _from_pretrained(
        AutoModelForSequenceClassification,
        model_cfg,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        ignore_mismatched_sizes=True,  # a checkpoint with a head for other labels
        output_loading_info=True,
    )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    missing = list(info.get("missing_keys", [])) + [
        key[0] if isinstance(key, tuple) else key for key in info.get("mismatched_keys", [])
    ]
    new_modules = sorted({key.rsplit(".", 1)[0] for key in missing})
    if new_modules:
        log.info("newly initialised (trained in every trial): %s", ", ".join(new_modules))
    model.eval()
    return BaseModel(model, tokenizer, new_modules)


def build_trial_model(base: BaseModel, peft_cfg: DictConfig, seed: int) -> torch.nn.Module:
    """A fresh copy of the base model, wrapped in the configured adapter (if any): a
    ``PreTrainedModel`` or a peft ``PeftModel``."""
    from transformers import set_seed

    set_seed(seed)  # adapter initialisation and dropout
    model = copy.deepcopy(base.model)
    model.train()
    if peft_cfg.get("config") is None:
        return model  # full fine-tuning

    from peft import get_peft_model

    config = build("peft.config", peft_cfg.config)
    resolve_targets(config, base.model.config.model_type, base.model.config)
    if base.new_modules and hasattr(config, "modules_to_save"):
        config.modules_to_save = sorted(set(config.modules_to_save or []) | set(base.new_modules))
    try:
        return get_peft_model(model, config)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError("peft.config", first_line(exc)) from exc


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts: peft's own count for an adapter model (the same
    figures, checked for LoRA, prefix, prompt and IA3), the plain sum for a full fine-tune."""
    if hasattr(model, "get_nb_trainable_parameters"):
        trainable, total = model.get_nb_trainable_parameters()
        return int(trainable), int(total)
    params = list(model.parameters())
    return (sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))


class _Pretrained(Protocol):
    """A transformers Auto class."""

    def from_pretrained(self, name: str, **kwargs: object) -> Any: ...


def _from_pretrained(cls: _Pretrained, model_cfg: DictConfig, **kwargs: object) -> Any:
    """``cls.from_pretrained`` (a transformers Auto class: a model, a tokenizer, or a model
    and its loading info) with errors that name the config field."""
    name = str(model_cfg.name_or_path)
    looks_local = name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists()
    if looks_local and not Path(name).expanduser().is_dir():
        raise ConfigError("model.name_or_path", f"folder '{name}' does not exist")
    try:
        return cls.from_pretrained(
            str(Path(name).expanduser()) if looks_local else name,
            revision=model_cfg.get("revision"),
            trust_remote_code=bool(model_cfg.get("trust_remote_code", False)),
            **kwargs,
        )
    except (OSError, ValueError) as exc:
        if "custom code" in str(exc) and not model_cfg.get("trust_remote_code", False):
            raise ConfigError(
                "model.trust_remote_code",
                f"'{name}' needs its own Python code to load; it runs only with "
                "model.trust_remote_code=true (read that code first)",
            ) from exc
        where = "local folder" if looks_local else "hub id (or local folder)"
        raise ConfigError(
            "model.name_or_path", f"could not load {where} '{name}': {first_line(exc)}"
        ) from exc
