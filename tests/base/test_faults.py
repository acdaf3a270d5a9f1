"""Fault points (the crash-safety tests' trigger): rules, matching, actions."""

from __future__ import annotations

import pytest

from harness.base import faults


@pytest.fixture(autouse=True)
def _no_trial():
    yield
    faults.set_trial(None)


def test_a_rule_fires_on_its_trial_and_hit_only(monkeypatch):
    monkeypatch.setenv(faults.ENV, "train_step:2:3=nan, evaluate=raise")
    faults.set_trial(1)
    assert [faults.hit("train_step") for _ in range(4)] == [None] * 4  # another trial
    faults.set_trial(2)
    assert [faults.hit("train_step") for _ in range(4)] == [None, None, "nan", None]
    with pytest.raises(faults.InjectedFault, match="evaluate reached \\(trial 2"):
        faults.hit("evaluate")  # no trial named: any trial, first hit


def test_out_of_memory_is_torchs_own_error(monkeypatch):
    import torch

    monkeypatch.setenv(faults.ENV, "checkpoint=oom")
    with pytest.raises(torch.OutOfMemoryError):
        faults.hit("checkpoint")


@pytest.mark.parametrize("spec", ["train_step=explode", "nowhere=raise", "evaluate:1:2:3=raise"])
def test_an_unreadable_rule_says_how_to_write_one(monkeypatch, spec):
    monkeypatch.setenv(faults.ENV, spec)
    with pytest.raises(ValueError, match="POINT\\[:TRIAL\\[:HIT\\]\\]=ACTION"):
        faults.hit("evaluate")


def test_unset_costs_nothing(monkeypatch):
    monkeypatch.delenv(faults.ENV, raising=False)
    assert faults.hit("train_step") is None
