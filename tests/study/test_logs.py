"""Logs that suit where they go: without a terminal (CI, nohup, SLURM: a pipe) a sweep writes
one line per evaluation and per trial, never a progress-bar redraw; the study's log file holds
the same lines and grows with every run of the study; display.log_level sets which harness
messages show."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import optuna
import pytest

from harness.base.progress import configure_logging
from harness.study import run_sweep
from tests.helpers.sweeps import SweepProcess

EVAL_LINE = re.compile(r"trial (\d+) eval (\d+): accuracy \d\.\d{4}$")
TRIAL_LINE = re.compile(r"trial (\d+) COMPLETE accuracy \d\.\d{4} in ")


@pytest.mark.integration
def test_a_sweep_without_a_terminal_writes_lines_and_a_log_file(sweep_overrides, compose):
    common = [
        *sweep_overrides,
        "pruner=none",
        "report.enabled=false",
        "train.num_train_epochs=1",
        "display.progress=true",
        "train.evaluate_from=0",  # both evaluations run (no pruner: the first would be skipped)
    ]
    overrides = [*common, "study.n_trials=1"]
    sweep = SweepProcess(overrides)  # stdout and stderr are pipes: no terminal
    assert sweep.wait() == 0, sweep.err[-3000:]
    output = sweep.err + sweep.stdout
    assert "\r" not in output
    cfg = compose(overrides)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    evaluations = {(t.number, step) for t in study.trials for step in t.intermediate_values}
    assert len(evaluations) == 2  # 1 trial x 2 evaluations
    shown = [
        tuple(map(int, m.groups()))
        for line in sweep.err.splitlines()
        if (m := EVAL_LINE.search(line))
    ]
    assert sorted(shown) == sorted(evaluations)  # one line per evaluation, none twice
    assert len([line for line in sweep.err.splitlines() if TRIAL_LINE.search(line)]) == 1

    log_file = Path(str(cfg.study.output_dir)) / "sweep.log"
    first = log_file.read_text().splitlines()
    assert "\r" not in "".join(first)
    assert re.match(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d run started: python -m harness.sweep ", first[0]
    )
    assert sorted(
        tuple(map(int, m.groups())) for line in first if (m := EVAL_LINE.search(line))
    ) == sorted(evaluations)
    assert len([line for line in first if TRIAL_LINE.search(line)]) == 1
    assert any("1 of 1 trials finished" in line for line in first)  # the summary

    # run again (here nothing is left to run): the log file is appended to, not replaced
    run_sweep(compose(overrides))
    second = log_file.read_text().splitlines()
    assert second[: len(first)] == first and len(second) > len(first)
    assert sum("run started:" in line for line in second) == 2
    assert any("1 of 1 trials finished" in line for line in second[len(first) :])


def test_the_log_level_sets_which_harness_messages_show():
    harness_log = logging.getLogger("harness")
    try:
        configure_logging("WARNING")
        assert harness_log.level == logging.WARNING
        assert not harness_log.isEnabledFor(logging.INFO)
        configure_logging("debug")
        assert harness_log.isEnabledFor(logging.DEBUG)
    finally:
        configure_logging()
    assert harness_log.level == logging.INFO
