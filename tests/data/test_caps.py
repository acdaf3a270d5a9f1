"""A user's data is used whole: the demo's 1,500-row cap belongs to the embedded data sets only,
and a cap that cuts rows is logged with both counts (issue 26)."""

from __future__ import annotations

import logging

import pytest

from harness.data import load_labelled_data
from tests.helpers.configs import write_sentiment_csv

SWEEPS = ("lora", "full", "ia3", "prefix", "prompt", "methods")


@pytest.mark.parametrize("sweep", SWEEPS)
def test_the_demo_cap_is_the_embedded_datas_and_a_users_data_is_whole(compose, sweep):
    # the default (make sweep: +sweep=lora on vader) keeps its 1,500 training tweets
    assert compose([f"+sweep={sweep}"]).data.max_train_samples == 1500
    assert compose([f"+sweep={sweep}", "data=amazon"]).data.max_train_samples == 1500
    # a user's files and hub data: every row, whatever the sweep
    files = ["data=files", "data.train_file=train.csv"]
    assert compose([f"+sweep={sweep}", *files]).data.max_train_samples is None
    assert compose([f"+sweep={sweep}", "data=hub"]).data.max_train_samples is None
    # the user's cap on the command line wins, on any data
    assert (
        compose([f"+sweep={sweep}", *files, "data.max_train_samples=100"]).data["max_train_samples"]
        == 100
    )
    assert (
        compose([f"+sweep={sweep}", "data.max_train_samples=null"]).data["max_train_samples"]
        is None
    )


def files_data(compose, tmp_path, *overrides: str):
    train = write_sentiment_csv(tmp_path / "train.csv", 1600, seed=1)
    validation = write_sentiment_csv(tmp_path / "validation.csv", 90, seed=2)
    cfg = compose(
        [
            "+sweep=lora",
            "data=files",
            f"data.train_file={train}",
            f"data.validation_file={validation}",
            *overrides,
        ]
    )
    return load_labelled_data(cfg.data)


def test_a_file_larger_than_the_demo_cap_is_used_whole_and_logged_so(compose, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="harness.data"):
        data = files_data(compose, tmp_path)
    assert data.sizes() == {"train": 1600, "validation": 90}
    assert "data 'files': train 1,600, validation 90;" in caplog.text
    assert "rows (data." not in caplog.text  # nothing was cut


def test_a_users_cap_is_logged_with_both_counts(compose, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="harness.data"):
        data = files_data(
            compose, tmp_path, "data.max_train_samples=100", "data.max_eval_samples=50"
        )
    assert data.sizes() == {"train": 100, "validation": 50}
    assert data.available == {"train": 1600, "validation": 90}
    assert (
        "train 100 of 1,600 rows (data.max_train_samples), "
        "validation 50 of 90 rows (data.max_eval_samples)"
    ) in caplog.text


def test_a_cap_above_the_rows_cuts_nothing(compose, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="harness.data"):
        data = files_data(compose, tmp_path, "data.max_train_samples=5000")
    assert data.sizes()["train"] == 1600
    assert "train 1,600, validation 90;" in caplog.text
