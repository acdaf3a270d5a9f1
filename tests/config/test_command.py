"""The command line's fast path: what `--help` and a config error import, and the two cuts of
Hydra's own flow (harness.config.command.faster_hydra) that change nothing it prints."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest
from hydra import initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.hydra import Hydra
from hydra.core.global_hydra import GlobalHydra

from harness.cli import sweep as sweep_cli
from harness.config.command import CONF, _hydra_patches, faster_hydra, run_hydra

HEAVY = ("optuna", "sqlalchemy", "torch", "transformers", "datasets", "mlflow", "harness.study")


def test_both_cuts_find_the_hydra_methods_they_replace():
    # a Hydra release that renames one runs its own (slower) flow: this test says so
    assert {name for _, name, _ in _hydra_patches()} == {
        "get_mode",
        "load_configuration",
        "get_group_options",
    }


def test_the_cuts_are_undone_after_the_call():
    before = (Hydra.__dict__["get_mode"], Hydra.__dict__["compose_config"])
    with faster_hydra():
        assert Hydra.__dict__["get_mode"] is not before[0]
    assert (Hydra.__dict__["get_mode"], Hydra.__dict__["compose_config"]) == before


def test_the_help_lists_the_same_config_groups_as_hydra():
    with initialize_config_dir(CONF, version_base="1.3"):
        hydra = GlobalHydra.instance().hydra
        assert hydra is not None
        plain = hydra.format_config_groups(lambda group: True)
        with faster_hydra():
            fast = hydra.format_config_groups(lambda group: True)
    assert fast == plain
    assert "sweep: full, ia3, lora, methods, prefix, prompt" in fast
    assert "hydra/launcher: basic" in fast


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ("study.n_trials=abc", "error: study.n_trials: must be a positive integer, got 'abc'"),
        ("study.direction=sideways", "error: study.direction: must be maximize or minimize"),
        ("train.learning_rate=-1", "error: train.learning_rate: must be a positive number, got -1"),
    ],
)
def test_a_config_error_is_composed_once(monkeypatch, capsys, override, line):
    composed: list[str] = []
    compose = Hydra.compose_config

    def counting(self, *args, **kwargs):
        composed.append(str(kwargs.get("run_mode")))
        return compose(self, *args, **kwargs)

    monkeypatch.setattr(Hydra, "compose_config", counting)
    monkeypatch.setattr(sys, "argv", ["harness.sweep", "+sweep=lora", override])
    with pytest.raises(SystemExit) as stopped:
        run_hydra(sweep_cli.main)
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().startswith(line)
    # a Hydra-level error fails the first compose; a value the schemas refuse is reported from
    # the job's compose, before the study is imported
    assert len(composed) <= 2


def test_help_and_a_config_error_import_nothing_heavy(tmp_path):
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['harness.sweep', *sys.argv[1:]]\n"
        "try:\n"
        "    runpy.run_module('harness.sweep', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)\n"
    )
    for args in (
        ["--help"],
        ["+sweep=lora", "study.n_trials=abc"],  # refused by Hydra's compose
        ["+sweep=lora", "study.n_trials=-3"],  # refused by the harness's schema check
    ):
        done = subprocess.run(
            [sys.executable, "-c", probe, *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
        )
        assert "HEAVY []" in done.stderr, (args, done.stderr[-2000:])


@pytest.mark.parametrize(
    "overrides",
    [["+sweep=lora"], ["+sweep=full", "study.n_trials=3", "data=amazon", "hydra.verbose=true"]],
)
def test_a_config_composed_once_is_the_one_hydra_composes_for_the_run(overrides):
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    def composed(fast: bool) -> dict:
        GlobalHydra.instance().clear()
        with initialize_config_dir(CONF, version_base="1.3"):
            hydra = GlobalHydra.instance().hydra
            assert hydra is not None
            with faster_hydra() if fast else contextlib.nullcontext():
                line = list(overrides)
                assert hydra.get_mode(config_name="config", overrides=line) is None
                cfg = hydra.compose_config(
                    "config", [*line, "hydra.mode=RUN"], run_mode=RunMode.RUN
                )
        return OmegaConf.to_container(cfg, resolve=False)

    calls: list[str] = []
    original = ConfigLoaderImpl.load_configuration

    def counting(self, *args, **kwargs):
        calls.append("composed")
        return original(self, *args, **kwargs)

    plain = composed(fast=False)
    ConfigLoaderImpl.load_configuration = counting
    try:
        fast = composed(fast=True)
    finally:
        ConfigLoaderImpl.load_configuration = original
    assert fast == plain
    assert fast["hydra"]["mode"] == RunMode.RUN
    assert len(calls) == 1  # composed once (the cut calls the original once)


def test_a_sweeping_command_line_is_composed_as_hydra_does():
    from hydra.types import RunMode

    with initialize_config_dir(CONF, version_base="1.3"):
        hydra = GlobalHydra.instance().hydra
        assert hydra is not None
        with faster_hydra():
            line = ["+sweep=lora", "study.worker=0,1"]
            assert hydra.get_mode(config_name="config", overrides=line) is None
            with pytest.raises(Exception, match="requires --multirun|Ambiguous"):
                hydra.compose_config("config", [*line, "hydra.mode=RUN"], run_mode=RunMode.RUN)
