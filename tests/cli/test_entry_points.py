"""Every console script of pyproject.toml names a function that exists, and the ``python -m``
modules run their command only when run: importing one (as a console script's wrapper or a
test does) runs nothing. The scripts themselves run from the wheel (tests/test_wheel.py)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+ (the checkout's venv)

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
MAIN_MODULES = ["harness.sweep", "harness.report.__main__", "harness.export.__main__"]
MAIN_MODULES += ["harness.predict", "harness.storage_proxy"]


def test_the_five_console_scripts_are_declared():
    assert set(SCRIPTS) == {
        "harness-sweep",
        "harness-report",
        "harness-export",
        "harness-predict",
        "harness-storage-proxy",
    }


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_a_console_script_names_a_function(script, monkeypatch, capsys):
    module_name, _, attribute = SCRIPTS[script].partition(":")
    # were the import to run the command, it would print its help and exit
    monkeypatch.setattr(sys, "argv", [script, "--help"])
    module = importlib.import_module(module_name)
    assert callable(getattr(module, attribute)), SCRIPTS[script]
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("name", MAIN_MODULES)
def test_importing_a_main_module_runs_nothing(name, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    monkeypatch.delitem(sys.modules, name, raising=False)  # imported afresh: its body runs
    importlib.import_module(name)  # a SystemExit here: it ran its command
    assert capsys.readouterr() == ("", "")
