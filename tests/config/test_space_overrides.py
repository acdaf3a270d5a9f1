"""Search-space entries from the command line: given with a type, an entry is replaced whole;
without one, merged; ``{type: fixed, value: …}`` fixes a value for the study."""

from __future__ import annotations

import json
import sys

import optuna
import pytest
import yaml
from omegaconf import OmegaConf

from harness import sweep
from harness.config.space_overrides import prepare
from harness.space import MethodSpace, SearchSpace
from harness.study.storage import fingerprint
from tests.helpers.sweeps import stores

REPLACED = "search_space={train.learning_rate: {type: categorical, choices: [1e-4, 3e-4]}}"


def entry(cfg, path, root="search_space"):
    return OmegaConf.to_container(OmegaConf.select(cfg, root))[path]


@pytest.mark.parametrize("prefix", ["", "+", "++"])
def test_an_entry_given_with_a_type_replaces_the_entry(compose, prefix):
    cfg = compose(["+sweep=full", prefix + REPLACED])
    assert entry(cfg, "train.learning_rate") == {"type": "categorical", "choices": [1e-4, 3e-4]}
    assert entry(cfg, "train.weight_decay") == {"type": "float", "low": 0.0, "high": 0.1}
    space = SearchSpace.from_config(cfg.search_space, cfg)
    trial = optuna.create_study().ask()
    assert space.suggest(trial)["train.learning_rate"] in (1e-4, 3e-4)
    assert trial.distributions[
        "train.learning_rate"
    ] == optuna.distributions.CategoricalDistribution([1e-4, 3e-4])


def test_an_entry_without_a_type_is_merged(compose):
    cfg = compose(["+sweep=full", "search_space={train.learning_rate: {high: 1.0e-3}}"])
    assert entry(cfg, "train.learning_rate") == {
        "type": "float",
        "low": 5.0e-5,
        "high": 1.0e-3,
        "log": True,
    }


def test_a_new_entry_and_a_method_entry_from_the_command_line(compose):
    cfg = compose(
        [
            "+sweep=methods",
            "search_space={train.seed: {type: fixed, value: 7}}",
            "method_space.lora={train.learning_rate: {type: float, low: 1e-3, high: 2e-3}}",
        ]
    )
    assert entry(cfg, "train.seed") == {"type": "fixed", "value": 7}
    assert entry(cfg, "train.learning_rate", "method_space.lora") == {
        "type": "float",
        "low": 1e-3,
        "high": 2e-3,
    }  # log: true of the sweep's entry is gone
    space = MethodSpace.from_config(cfg)
    study = optuna.create_study()
    study.enqueue_trial({"method": "lora"})
    trial = study.ask()
    trial_cfg, logged = space.sample(trial, cfg)
    assert trial_cfg.train.seed == 7 and logged["train.seed"] == 7
    assert "train.seed" not in trial.params


def test_a_changed_space_is_a_changed_study(compose):
    assert (
        fingerprint(compose(["+sweep=full"]))["search_space"]
        != fingerprint(compose(["+sweep=full", REPLACED]))["search_space"]
    )


def test_only_search_space_overrides_are_rewritten():
    assert prepare(
        [
            REPLACED,
            "+search_space={}",
            "method_space.lora={a: 1}",
            "study.n_trials=3",
            "--cfg",
            "job",
        ]
    ) == [
        "++" + REPLACED,
        "++search_space={}",
        "++method_space.lora={a: 1}",
        "study.n_trials=3",
        "--cfg",
        "job",
    ]


@pytest.mark.integration  # a sweep of the tiny BERT
def test_a_sweep_from_the_command_line_with_a_replaced_and_a_fixed_entry(
    sweep_overrides, monkeypatch, capsys
):
    """The real entry point: every trial samples from the replaced entry and runs with the
    fixed value, which MLflow records on every trial run and Optuna does not search."""
    overrides = [
        *sweep_overrides,
        "study.n_trials=2",
        "pruner=none",
        "report.enabled=false",
        "train.num_train_epochs=1",
        "search_space={train.learning_rate: {type: categorical, choices: [0.02, 0.04]},"
        " peft.config.r: {type: fixed, value: 2}}",
    ]
    monkeypatch.setattr(sys, "argv", ["harness.sweep", *overrides])
    sweep.cli()
    assert "error" not in capsys.readouterr().err
    cfg, study, client, parent, children = stores(overrides)
    assert len(study.trials) == 2
    for trial in study.trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert trial.params["train.learning_rate"] in (0.02, 0.04)
        assert "peft.config.r" not in trial.params
        run = children[trial.number]
        assert run.data.params["peft.config.r"] == "2"
        with open(client.download_artifacts(run.info.run_id, "config.yaml")) as handle:
            config = yaml.safe_load(handle)
        assert config["peft"]["config"]["r"] == 2
    recorded = json.loads(parent.data.params["search_space"])
    assert recorded["peft.config.r"] == {"type": "fixed", "value": 2}
