"""Search spaces as data: parsing, validation against the composed config, sampling, applying."""

from __future__ import annotations

import optuna
import pytest
from omegaconf import OmegaConf

from harness.base.errors import ConfigError
from harness.space import MethodSpace, SearchSpace, fit_params


@pytest.fixture(scope="module")
def cfg(compose):
    return compose(["+sweep=lora"])


def parse(space, cfg=None):
    return SearchSpace.from_config(space, cfg)


def test_the_lora_sweep_space_parses_against_its_config(cfg):
    space = SearchSpace.from_config(cfg.search_space, cfg)
    paths = [p.path for p in space]
    assert "train.learning_rate" in paths and "peft.config.r" in paths
    lr = next(p for p in space if p.path == "train.learning_rate")
    assert (lr.kind, lr.log) == ("float", True) and lr.low < lr.high


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"type": "float", "low": 1.0, "high": 0.5}, "search_space.x", "must be less than high"),
        ({"type": "float", "low": 0.1, "high": 0.1}, "search_space.x", "must be less than high"),
        ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "search_space.x", "low > 0"),
        ({"type": "int", "low": -1, "high": 4, "log": True}, "search_space.x", "low > 0"),
        ({"type": "categorical", "choices": []}, "search_space.x", "non-empty list"),
        ({"type": "categorical", "choices": [1, 1]}, "search_space.x", "duplicates"),
        ({"type": "gaussian", "low": 0, "high": 1}, "search_space.x", "type must be one of"),
        ({"type": "float", "high": 1.0}, "search_space.x", "'low' is required"),
        ({"type": "float", "low": "a", "high": 1.0}, "search_space.x", "finite number"),
        ({"type": "int", "low": 0.5, "high": 4}, "search_space.x", "must be an integer"),
        ({"type": "float", "low": 0, "high": 1, "step": 2}, "search_space.x", "larger than"),
        (
            {"type": "float", "low": 1e-3, "high": 1, "log": True, "step": 0.1},
            "search_space.x",
            "cannot be combined",
        ),
        ({"type": "float", "low": 0, "high": 1, "choices": [1]}, "search_space.x", "unknown key"),
        ("0.1", "search_space.x", "expected a mapping"),
    ],
)
def test_malformed_distributions_name_the_field(spec, field, message):
    with pytest.raises(ConfigError) as err:
        parse({"x": spec})
    assert err.value.field == field
    assert message in err.value.message


def test_a_missing_or_empty_space_asks_for_a_sweep():
    for space in (None, {}):
        with pytest.raises(ConfigError, match=r"\+sweep=NAME"):
            parse(space)


def test_paths_must_exist_in_the_composed_config(cfg):
    with pytest.raises(ConfigError) as err:
        parse({"train.learning_rat": {"type": "float", "low": 0.1, "high": 1}}, cfg)
    assert err.value.field == "search_space.train.learning_rat"
    assert "learning_rate" in err.value.message  # the keys that are there are listed


def test_sections_and_study_level_settings_cannot_vary(cfg):
    with pytest.raises(ConfigError, match="config section"):
        parse({"peft.config": {"type": "categorical", "choices": [1, 2]}}, cfg)
    with pytest.raises(ConfigError, match="fixed for the whole study"):
        parse({"data.max_length": {"type": "int", "low": 16, "high": 64}}, cfg)


def test_suggest_samples_inside_the_space_with_a_real_trial():
    space = parse(
        {
            "a": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "b": {"type": "int", "low": 2, "high": 10, "step": 2},
            "c": {
                "type": "categorical",
                "choices": [["query", "value"], ["query", "key", "value"]],
            },
        }
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        values = space.suggest(trial)
        assert 1e-4 <= values["a"] <= 1e-2
        assert values["b"] in (2, 4, 6, 8, 10)
        assert values["c"] in (["query", "value"], ["query", "key", "value"])  # lists come back
        study.tell(trial, 0.0)
    dist = study.trials[0].distributions
    assert dist["a"].log and dist["b"].step == 2


def test_apply_sets_values_on_a_copy(cfg):
    original = OmegaConf.to_container(cfg, resolve=False)
    trial_cfg = SearchSpace.apply(cfg, {"train.learning_rate": 0.123, "peft.config.r": 16})
    assert trial_cfg.train.learning_rate == 0.123 and trial_cfg.peft.config.r == 16
    assert OmegaConf.to_container(cfg, resolve=False) == original


def test_a_fixed_entry_is_applied_to_every_trial_and_never_searched(cfg):
    space = parse(
        {
            "train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2},
            "peft.config.r": {"type": "fixed", "value": 8},
        },
        cfg,
    )
    assert space.param_names() == ["train.learning_rate", "peft.config.r"]  # both on MLflow
    assert list(space.grid()) == ["train.learning_rate"]  # a grid has nothing to visit in it
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    trial_cfg, values = space.sample(trial, cfg)
    assert values["peft.config.r"] == 8 and trial_cfg.peft.config.r == 8
    assert set(trial.params) == {"train.learning_rate"}  # not an Optuna param


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "fixed"}, "'value' is required for type fixed"),
        (
            {"type": "fixed", "value": 8, "choices": [8]},
            "unknown key(s) choices for type fixed (allowed: type, value)",
        ),
    ],
)
def test_a_malformed_fixed_entry_names_the_entry(cfg, spec, message):
    with pytest.raises(ConfigError) as err:
        parse({"peft.config.r": spec}, cfg)
    assert err.value.field == "search_space.peft.config.r" and message in err.value.message


def test_a_fixed_path_must_exist_too(cfg):
    with pytest.raises(ConfigError, match="not in the composed config"):
        parse({"peft.config.rank": {"type": "fixed", "value": 8}}, cfg)


def test_params_to_queue_are_checked_against_the_space(cfg):
    space = parse(
        {
            "train.learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2},
            "train.num_train_epochs": {"type": "int", "low": 1, "high": 5, "step": 2},
            "peft.config.target_modules": {
                "type": "categorical",
                "choices": [["query"], ["query", "value"]],
            },
            "peft.config.r": {"type": "fixed", "value": 8},
        },
        cfg,
    )
    assert fit_params(
        space,
        {
            "train.learning_rate": 2e-3,
            "train.num_train_epochs": 3,
            "peft.config.target_modules": ["query"],
            "peft.config.r": 8,
        },
    ) == {
        "train.learning_rate": 2e-3,
        "train.num_train_epochs": 3,
        "peft.config.target_modules": '["query"]',
    }  # the choice's label, as Optuna records it
    assert fit_params(space, {"train.learning_rate": 5e-3}) == {"train.learning_rate": 5e-3}
    for params, field, message in [
        ({"train.learning_rate": 0.5}, "train.learning_rate", "0.5 is outside its range"),
        ({"train.learning_rate": "high"}, "train.learning_rate", "must be a number"),
        ({"train.num_train_epochs": 2}, "train.num_train_epochs", "is not one of its values"),
        (
            {"peft.config.target_modules": ["key"]},
            "peft.config.target_modules",
            "is not one of its choices",
        ),
        ({"peft.config.r": 16}, "peft.config.r", "is fixed at 8 in this study"),
        ({"train.seed": 1}, "train.seed", "is not a param of this study's search space"),
    ]:
        with pytest.raises(ConfigError) as err:
            fit_params(space, params)
        assert err.value.field == field and message in err.value.message, err.value


def test_params_to_queue_in_a_methods_study(compose):
    cfg = compose(["+sweep=methods"])
    space = MethodSpace.from_config(cfg)
    lora = {
        "method": "lora",
        "lora/train.learning_rate": 3e-3,
        "lora/peft.config.r": 8,
        "train.warmup_steps": 0.05,
    }
    assert fit_params(space, lora) == lora
    # the method's own paths without the prefix; the method from the prefixes
    assert fit_params(space, {"method": "lora", "train.learning_rate": 3e-3}) == {
        "method": "lora",
        "lora/train.learning_rate": 3e-3,
    }
    assert fit_params(space, {"lora/peft.config.r": 4}) == {
        "method": "lora",
        "lora/peft.config.r": 4,
    }
    with pytest.raises(ConfigError, match="'adapter' is not a method of this study"):
        fit_params(space, {"method": "adapter"})
    with pytest.raises(ConfigError, match="lora/train.learning_rate: 0.5 is outside"):
        fit_params(space, {"method": "lora", "train.learning_rate": 0.5})
    with pytest.raises(ConfigError, match="ia3/train.learning_rate: is not a param"):
        fit_params(space, {"method": "lora", "ia3/train.learning_rate": 0.05})
