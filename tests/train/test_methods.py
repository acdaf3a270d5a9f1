"""Every fine-tuning method on every model family: a short real trial each (tiny models)."""

from __future__ import annotations

import pytest

from harness.base.errors import ConfigError
from harness.records import schema
from harness.study import run_sweep
from harness.train.model import build_trial_model, load_base_model, load_tokenizer
from tests.helpers.models import FAMILIES

METHODS = ("none", "lora", "prefix", "prompt", "ia3")
SWEEP = {"none": "full"}
# DistilBERT's attention takes no past key values, which prefix tuning needs (a peft limit).
UNSUPPORTED = {("distilbert", "prefix"): "past key values"}


def overrides_for(family_dir, files, tmp_path, method: str) -> list[str]:
    return [
        f"+sweep={SWEEP.get(method, method)}",
        f"model.name_or_path={family_dir}",
        "model.name=tiny",
        "data=files",
        f"data.train_file={files['train']}",
        f"data.validation_file={files['validation']}",
        "data.max_train_samples=64",
        f"study.storage=sqlite:///{tmp_path}/optuna.db",
        f"study.output_dir={tmp_path}/out",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        f"tracking.artifact_location={tmp_path}/mlruns",
        "study.n_trials=1",
        "pruner=none",
        "train.num_train_epochs=1",
        "train.evals_per_epoch=2",
        "train.per_device_train_batch_size=16",
        "display.progress=false",
        "final.seeds=0",
    ]


def _grid():
    """Every (family, method) pair. The default run covers every method on BERT, LoRA on GPT-2
    (a decoder without a pad token) and the refused pair; the rest of the grid is slow (make
    test-slow)."""
    for family in FAMILIES:
        for method in METHODS:
            quick = (
                family == "bert"
                or (family, method) == ("gpt2", "lora")
                or (family, method) in UNSUPPORTED
            )
            yield pytest.param(
                family, method, id=f"{family}-{method}", marks=() if quick else pytest.mark.slow
            )


@pytest.mark.integration
@pytest.mark.parametrize(("family", "method"), _grid())
def test_a_trial_of_every_method_on_every_family(
    family, method, tiny_family, sentiment_files, tmp_path, compose
):
    cfg = compose(overrides_for(tiny_family(family), sentiment_files, tmp_path, method))
    if (family, method) in UNSUPPORTED:  # refused before any study exists, with the reason
        with pytest.raises(ConfigError, match=UNSUPPORTED[family, method]) as err:
            run_sweep(cfg)
        assert err.value.field == "peft"
        assert not (tmp_path / "optuna.db").exists()
        return
    summary = run_sweep(cfg)
    assert (summary.complete, summary.failed) == (1, 0), summary.format()
    assert summary.best_value is not None


@pytest.mark.parametrize(
    ("family", "method", "expected"),
    [
        ("bert", "lora", {"query", "value"}),
        ("roberta", "lora", {"query", "value"}),
        ("electra", "ia3", {"key", "value", "output.dense"}),
        ("distilbert", "lora", {"q_lin", "v_lin"}),
        ("distilbert", "ia3", {"k_lin", "v_lin", "lin2"}),
        ("gpt2", "lora", {"c_attn"}),
        ("gpt2", "ia3", {"c_attn", "mlp.c_proj"}),
    ],
)
def test_target_modules_are_resolved_per_family(family, method, expected, tiny_family, compose):
    cfg = compose([f"+sweep={method}", f"model.name_or_path={tiny_family(family)}"])
    tokenizer = load_tokenizer(cfg.model)
    base = load_base_model(cfg.model, ["a", "b"], tokenizer, seed=0)
    model = build_trial_model(base, cfg.peft, seed=0)
    assert set(model.peft_config["default"].target_modules) == expected


def test_gpt2_pads_with_eos_without_being_told(tiny_family, compose):
    cfg = compose(["+sweep=lora", f"model.name_or_path={tiny_family('gpt2')}"])
    tokenizer = load_tokenizer(cfg.model)
    assert tokenizer.pad_token == tokenizer.eos_token is not None
    base = load_base_model(cfg.model, ["a", "b"], tokenizer, seed=0)
    assert base.model.config.pad_token_id == tokenizer.pad_token_id


def test_the_head_trains_and_the_base_is_frozen_for_peft_methods(tiny_family, compose):
    for method in ("lora", "prefix", "prompt", "ia3"):
        cfg = compose([f"+sweep={method}", f"model.name_or_path={tiny_family('bert')}"])
        base = load_base_model(cfg.model, ["a", "b"], load_tokenizer(cfg.model), seed=0)
        model = build_trial_model(base, cfg.peft, seed=0)
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        assert any("classifier" in n for n in trainable), method
        assert not any(
            "encoder.layer.0.attention.self.query.weight" in n and "lora" not in n
            for n in trainable
        ), method


@pytest.mark.integration
def test_prompt_tuning_with_text_initialisation(tiny_family, sentiment_files, tmp_path, compose):
    overrides = overrides_for(tiny_family("bert"), sentiment_files, tmp_path, "prompt")
    summary = run_sweep(
        compose(
            [
                *overrides,
                "peft.config.prompt_tuning_init=TEXT",
                "search_space={peft.config.prompt_tuning_init: {choices: [TEXT]}}",
            ]
        )
    )
    assert summary.complete == 1


def test_a_hub_model_that_cannot_be_reached_is_named(monkeypatch, compose):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # read once, when huggingface_hub was imported (earlier in this session): set it there too,
    # or the lookups wait for network timeouts
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    cfg = compose(["+sweep=lora", "model=gpt2"])
    with pytest.raises(ConfigError, match="openai-community/gpt2") as err:
        load_tokenizer(cfg.model)
    assert err.value.field == "model.name_or_path"


@pytest.mark.slow  # a 15-30 s sweep, kept out of the default run (under 10 minutes)
def test_the_methods_sweep_samples_each_methods_own_parameters(
    tiny_family, sentiment_files, tmp_path, compose
):
    import optuna

    overrides = overrides_for(tiny_family("bert"), sentiment_files, tmp_path, "methods")
    cfg = compose([*overrides, "study.n_trials=6", "sampler=random"])
    summary = run_sweep(cfg)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    assert summary.complete == 6
    for trial in study.trials:
        method = trial.params["method"]
        own = {k.split("/", 1)[0] for k in trial.params if "/" in k}
        assert own == {method}  # only the chosen method's parameters were sampled
        assert "train.warmup_steps" in trial.params  # the shared ones always
        if method == "lora":
            assert f"{method}/peft.config.r" in trial.params
    chosen = {t.params["method"] for t in study.trials}
    assert set(summary.per_method) == chosen
    assert "Best per method" in summary.format()
    for method, (number, value, trainable) in summary.per_method.items():
        assert study.trials[number].params["method"] == method and trainable > 0
        assert study.trials[number].value == value
    # the trial's MLflow run carries its method and the config it really ran with
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    experiment = client.get_experiment_by_name(cfg.study.name)
    for run in client.search_runs([experiment.experiment_id]):
        if run.data.tags.get(schema.ROLE_TAG) == schema.ROLE_TRIAL:
            number = int(run.data.tags[schema.NUMBER_TAG])
            assert run.data.params["method"] == study.trials[number].params["method"]
        else:
            assert any(k.startswith("best_trial.") for k in run.data.tags)


@pytest.mark.slow  # a 15-30 s sweep, kept out of the default run (under 10 minutes)
def test_two_objectives_report_a_pareto_front(tiny_family, sentiment_files, tmp_path, compose):
    import optuna

    overrides = overrides_for(tiny_family("bert"), sentiment_files, tmp_path, "methods")
    cfg = compose(
        [
            *overrides,
            "study.n_trials=4",
            "sampler=random",
            "study.second_objective=trainable_params",
        ]
    )
    summary = run_sweep(cfg)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    assert len(study.directions) == 2 and summary.complete == 4
    front = {t.number for t in study.best_trials}
    assert {number for number, _, _ in summary.pareto} == front
    for number, value, params in summary.pareto:
        assert study.trials[number].values == [value, params]
        assert params == study.trials[number].user_attrs["trainable_params"]
    assert "Pareto front" in summary.format()


def test_two_objectives_with_a_pruner_are_refused_not_silently_unpruned(sweep_overrides, compose):
    from harness.study import validate_config

    with pytest.raises(ConfigError, match="cannot prune a multi-objective") as err:
        validate_config(compose([*sweep_overrides, "study.second_objective=train_time"]))
    assert err.value.field == "pruner"
