"""The README.md (model card) of an exported model, made with huggingface_hub's own API
(``ModelCard``, ``ModelCardData``, ``EvalResult``): metadata the hub reads (base model, task,
evaluation results per split), then data, method, hyperparameters, metrics, how to load it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

SOURCES = {  # data source target -> what the data is
    "harness.data.sources.vader_tweets": (
        "the VADER tweets ground truth (Hutto & Gilbert, ICWSM-14): 4,200 tweets, each the mean "
        "rating of about 20 human raters on -4…+4, labelled negative (< -0.5), neutral or "
        "positive (> 0.5)"
    ),
    "harness.data.sources.local_files": "local files",
    "harness.data.sources.hub_dataset": "a Hugging Face Hub dataset",
}
TASK = "text-classification"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
TEMPLATE = "---\n{{ card_data }}\n---\n\n{{ body }}\n"


class CardData(TypedDict):
    """The data a model was trained on, as its card tells it."""

    name: str
    source: str  # what the data is (SOURCES), with its files or hub id
    sizes: dict[str, int]  # rows per split
    hub_id: str | None


class _CardInfo(TypedDict):
    study: str
    trial: int
    value: float
    metric: str
    direction: str
    is_best: bool
    evaluations: dict[str, dict[str, float]]  # {split: {metric: value}}
    params: dict[str, object]  # the trial's params (Optuna's values)
    method: str
    merged: bool
    peft_type: str | None
    base_model: str | None  # hub id
    model_name: str
    data: CardData
    labels: list[str]


class CardInfo(_CardInfo, total=False):
    """What a model card says: the trial, its evaluations, method, base model, data, labels;
    what the study ships instead of the trial alone (``ensemble``, ``soup``: the final stage's
    records of them, JSON) and where MLflow registered it."""

    ensemble: dict[str, Any]
    soup: dict[str, Any]
    registered: str


def base_model_id(name_or_path: str, hub_id: str | None) -> str | None:
    """The base model's hub id: ``name_or_path`` when it is one (not a local folder), else the
    config's ``model.hub_id`` (the hub model a local folder holds), else None."""
    if _HUB_ID.fullmatch(name_or_path) and not Path(name_or_path).expanduser().exists():
        return name_or_path
    return str(hub_id) if hub_id else None


def model_card(info: CardInfo) -> ModelCard:
    """A ``huggingface_hub.ModelCard``. ``info``: study, trial, value, metric, direction,
    is_best, evaluations ({split: {metric: value}}: validation, and test when there is one),
    params, method, merged, base_model (hub id or None), model_name, model_path, data (name,
    source, sizes, hub_id), labels, peft_type, registered."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    merged, peft_type = info["merged"], info.get("peft_type")
    library = "peft" if peft_type and not merged else "transformers"
    data = info["data"]
    extra: dict[str, Any] = {}
    if info.get("base_model"):  # how the hub relates it to its base model
        extra["base_model_relation"] = "adapter" if library == "peft" else "finetune"
    card_data = ModelCardData(
        model_name=f"{info['study']}-trial-{info['trial']}",
        base_model=info.get("base_model"),
        library_name=library,
        pipeline_tag=TASK,
        tags=["harness", "optuna", info["method"], *([peft_type.lower()] if peft_type else [])],
        datasets=[hub_id] if (hub_id := data.get("hub_id")) else None,
        metrics=sorted({k for split in info["evaluations"].values() for k in split}),
        eval_results=[
            EvalResult(
                task_type=TASK,
                dataset_type=data.get("hub_id") or data["name"],
                dataset_name=data["name"],
                dataset_split=split,
                metric_type=name,
                metric_name=f"{split} {name}",
                metric_value=float(value),
            )
            for split, figures in info["evaluations"].items()
            for name, value in figures.items()
        ]
        or None,
        **extra,
    )
    card: ModelCard = ModelCard.from_template(
        card_data, template_str=TEMPLATE, body=_body(info, library)
    )
    return card


def _body(info: CardInfo, library: str) -> str:
    from huggingface_hub import constants  # the hub's address as the client resolves it

    peft_type, data = info.get("peft_type"), info["data"]
    base = info.get("base_model")
    lines = [
        f"# {info['study']}: trial {info['trial']}",
        "",
        f"A text classifier fine-tuned by the harness: the "
        f"{'best' if info['is_best'] else 'chosen'} trial ({info['trial']}) of the Optuna "
        f"study `{info['study']}`, validation {info['metric']} "
        f"{info['value']:.4f} ({info['direction']}).",
        "",
        "## Data",
        "",
        f"- `{data['name']}`: {data['source']}",
    ]
    lines[4:4] = _shipped_as(info)
    ensemble = info.get("ensemble")
    lines += [f"- {split}: {size:,} examples" for split, size in data.get("sizes", {}).items()]
    lines += [
        f"- labels: {', '.join(f'{i} = {n}' for i, n in enumerate(info['labels']))}",
        "",
        "## Method",
        "",
        f"- base model: {info.get('model_name', '')}"
        + (f" ([`{base}`]({constants.ENDPOINT}/{base}))" if base else " (a local model)"),
        f"- fine-tuning: {info['method']}"
        + (
            f" (peft {peft_type}, "
            + ("merged into the weights)" if info["merged"] else "adapter kept separate)")
            if peft_type
            else ""
        ),
        "",
        "## Hyperparameters",
        "",
        "| param | value |",
        "|---|---|",
    ]
    lines += [f"| `{k}` | {_show(v)} |" for k, v in info["params"].items()]
    lines += [
        "",
        "The composed config of the trial is `config.yaml`.",
        "",
        "## Metrics (at the trial's best evaluation)",
        "",
        "| split | metric | value |",
        "|---|---|---|",
    ]
    lines += [
        f"| {split} | {k} | {_show(v)} |"
        for split, figures in info["evaluations"].items()
        for k, v in figures.items()
    ]
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        'python -m harness.predict . "some text" "another text"',
        "```",
        "",
        "```python",
    ]
    if ensemble:
        lines += [
            "from harness.predict import load_classifier, predict",
            "",
            'model, tokenizer = load_classifier("PATH/TO/THIS/FOLDER")  # every member',
            'print(predict(model, tokenizer, ["some text"])[0].label)',
            "```",
        ]
    elif library == "peft":
        lines += [
            "from peft import PeftConfig, PeftModel",
            "from transformers import AutoConfig, AutoModelForSequenceClassification, "
            "AutoTokenizer",
            "",
            'folder = "PATH/TO/THIS/FOLDER"',
            "base = AutoModelForSequenceClassification.from_pretrained(",
            "    PeftConfig.from_pretrained(folder).base_model_name_or_path,",
            "    config=AutoConfig.from_pretrained(folder))  # the label names",
            "model = PeftModel.from_pretrained(base, folder).eval()",
        ]
    else:
        lines += [
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
            "",
            'folder = "PATH/TO/THIS/FOLDER"',
            "model = AutoModelForSequenceClassification.from_pretrained(folder).eval()",
        ]
    if not ensemble:
        lines += [
            "tokenizer = AutoTokenizer.from_pretrained(folder)",
            'inputs = tokenizer(["some text"], return_tensors="pt")',
            "label = model.config.id2label[model(**inputs).logits.argmax(-1).item()]",
            "```",
        ]
    if info.get("registered"):
        lines += ["", f"Registered in MLflow as `{info['registered']}`."]
    return "\n".join(lines)


def _show(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else f"`{value}`"


def _shipped_as(info: CardInfo) -> list[str]:
    """The paragraph on what ships when it is not one trial's checkpoint: an ensemble of the
    study's models, or a soup of the chosen configuration's seeds (none: no lines)."""
    metric, ensemble, soup = info["metric"], info.get("ensemble"), info.get("soup")
    lines: list[str] = []
    if ensemble:
        members = ensemble["members"]
        lines += [
            f"Shipped as an ensemble of {len(members)} models the study trained (greedy ensemble "
            "selection on validation; the prediction is the weighted mean of their label "
            f"probabilities): {_scores(metric, ensemble)}.",
            "",
            "| member | weight | its validation |",
            "|---|---|---|",
            *[
                f"| `{m['name']}` (folder `member-{i}`) | {m['weight']:.3f} | {m['val']:.4f} |"
                for i, m in enumerate(members)
            ],
            "",
        ]
    if soup:
        lines += [
            f"Shipped as a soup: the weight average of {', '.join(soup['members'])} (the chosen "
            f"configuration's seeds; greedy soup on validation): {_scores(metric, soup)}.",
            "",
        ]
    return lines


def _scores(metric: str, shipped: dict[str, Any]) -> str:
    """A shipped soup's or ensemble's scores: "validation <metric> x, test y" (test when scored)."""
    test = (shipped.get("test") or {}).get("value")
    return f"validation {metric} {shipped['val']:.4f}" + (
        f", test {test:.4f}" if test is not None else ""
    )
