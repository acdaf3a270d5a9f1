"""The README.md (model card) of an exported model: data, method, hyperparameters, metrics,
how to load it."""

from __future__ import annotations

import json
from typing import Any

SOURCES = {  # data source target -> what the data is
    "harness.data.sources.vader_tweets": (
        "the VADER tweets ground truth (Hutto & Gilbert, ICWSM-14): 4,200 tweets, each the mean "
        "rating of about 20 human raters on -4…+4, labelled negative (< -0.5), neutral or "
        "positive (> 0.5)"),
    "harness.data.sources.local_files": "local files",
    "harness.data.sources.hub_dataset": "a Hugging Face Hub dataset",
}


def model_card(info: dict[str, Any]) -> str:
    """``info``: study, trial, value, metric, direction, metrics, params, method, merged,
    base_model, data (name, source, sizes), labels, peft_type, registered."""
    merged = info["merged"]
    peft_type = info.get("peft_type")
    library = "peft" if peft_type and not merged else "transformers"
    front = {
        "library_name": library,
        "base_model": info["base_model"],
        "pipeline_tag": "text-classification",
        "tags": ["harness", "optuna", info["method"]],
    }
    lines = ["---", *[f"{k}: {json.dumps(v)}" for k, v in front.items()], "---", "",
             f"# {info['study']}: trial {info['trial']}", "",
             f"A text classifier fine-tuned by the harness: the "
             f"{'best' if info['is_best'] else 'chosen'} trial ({info['trial']}) of the Optuna "
             f"study `{info['study']}`, validation {info['metric']} "
             f"{info['value']:.4f} ({info['direction']}).", "",
             "## Data", ""]
    data = info["data"]
    lines.append(f"- `{data['name']}`: {data['source']}")
    for split, size in data.get("sizes", {}).items():
        lines.append(f"- {split}: {size:,} examples")
    lines += [f"- labels: {', '.join(f'{i} = {n}' for i, n in enumerate(info['labels']))}", "",
              "## Method", "",
              f"- base model: {info.get('model_name', '')} (`{info['base_model']}`)",
              f"- fine-tuning: {info['method']}"
              + (f" (peft {peft_type}, " + ("merged into the weights)" if merged
                                            else "adapter kept separate)") if peft_type else ""),
              "", "## Hyperparameters", "", "| param | value |", "|---|---|"]
    lines += [f"| `{k}` | {_show(v)} |" for k, v in info["params"].items()]
    lines += ["", "The composed config of the trial is `config.yaml`.", "",
              "## Metrics (validation split, at the trial's best evaluation)", "",
              "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_show(v)} |" for k, v in info["metrics"].items()]
    lines += ["", "## Use", "", "```bash", "python -m harness.predict . \"some text\" "
              "\"another text\"", "```", "", "```python"]
    if library == "peft":
        lines += ["from peft import PeftConfig, PeftModel",
                  "from transformers import AutoConfig, AutoModelForSequenceClassification, "
                  "AutoTokenizer", "",
                  "folder = \"PATH/TO/THIS/FOLDER\"",
                  "base = AutoModelForSequenceClassification.from_pretrained(",
                  "    PeftConfig.from_pretrained(folder).base_model_name_or_path,",
                  "    config=AutoConfig.from_pretrained(folder))  # the label names",
                  "model = PeftModel.from_pretrained(base, folder).eval()"]
    else:
        lines += ["from transformers import AutoModelForSequenceClassification, AutoTokenizer",
                  "", "folder = \"PATH/TO/THIS/FOLDER\"",
                  "model = AutoModelForSequenceClassification.from_pretrained(folder).eval()"]
    lines += ["tokenizer = AutoTokenizer.from_pretrained(folder)", "```", ""]
    if info.get("registered"):
        lines += [f"Registered in MLflow as `{info['registered']}`.", ""]
    return "\n".join(lines)


def _show(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else f"`{value}`"
