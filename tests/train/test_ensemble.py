"""Greedy ensemble selection (Caruana et al. 2004, with replacement) on fixed validation
probabilities: the members and weights a hand computation gives."""

from __future__ import annotations

import numpy as np
import pytest

from harness.train.ensemble import (
    greedy_selection,
    log_loss,
    mixed,
    read_ensemble,
    softmax,
    write_ensemble,
)

LABELS = [0, 1, 0, 1, 1, 0]


def accuracy(probabilities):
    return float((probabilities.argmax(axis=-1) == np.asarray(LABELS)).mean())


def table(wrong_rows, confidence):
    """Two-label probabilities: the true label at ``confidence``, except on ``wrong_rows``
    (there at 1 - confidence)."""
    rows = []
    for i, label in enumerate(LABELS):
        true = 1 - confidence if i in wrong_rows else confidence
        rows.append([true, 1 - true] if label == 0 else [1 - true, true])
    return np.asarray(rows)


# each right on 4 of 6 rows, each wrong on another pair: together, by majority, right on all
MODELS = {
    "a": table({4, 5}, 0.9),
    "b": table({2, 3}, 0.8),
    "c": table({0, 1}, 0.7),
    "d": table({0, 1, 2, 3}, 0.6),  # 2/6: never helps
}


def test_the_hand_computed_ensemble():
    # round 1: a, b, c tie at 4/6; the lowest log loss goes first: c, (4 ln(1/.7) + 2 ln(1/.3))/6
    assert [accuracy(MODELS[n]) for n in "abc"] == [4 / 6] * 3
    losses = {n: log_loss(MODELS[n], LABELS) for n in "abc"}
    assert min(losses, key=losses.get) == "c"
    # round 2: every pair with c is 4/6 again; c+a has the lower loss (rows: .6, .8, .4 right)
    # than c+b (.55, .45, .75) or c+c
    pairs = {n: (MODELS["c"] + MODELS[n]) / 2 for n in "abc"}
    assert {n: accuracy(p) for n, p in pairs.items()} == {n: 4 / 6 for n in "abc"}
    assert min(pairs, key=lambda n: log_loss(pairs[n], LABELS)) == "a"
    # round 3: c+a+b is right on every row (the wrong one is outvoted: .53, .6, .67)
    assert accuracy((MODELS["a"] + MODELS["b"] + MODELS["c"]) / 3) == 1.0
    selection = greedy_selection(MODELS, LABELS, accuracy, size=3)
    assert list(selection.weights) == ["c", "a", "b"]
    assert selection.weights == pytest.approx({"c": 1 / 3, "a": 1 / 3, "b": 1 / 3})
    assert selection.history == pytest.approx([4 / 6, 4 / 6, 1.0])
    assert selection.value == 1.0
    assert selection.loss == pytest.approx(log_loss(mixed(MODELS, selection.weights), LABELS))


def test_a_single_round_is_the_best_single_model_and_never_worse():
    selection = greedy_selection(MODELS, LABELS, accuracy, size=1)
    assert selection.weights == {"c": 1.0}
    many = greedy_selection(MODELS, LABELS, accuracy, size=8)
    assert many.value >= selection.value


def test_repeats_raise_a_members_weight():
    # one strong model and two weak ones: the strong one is picked again and again
    models = {
        "strong": table({5}, 0.9),
        "weak": table({0, 1, 2}, 0.8),
        "weak2": table({3, 4, 5}, 0.7),
    }
    selection = greedy_selection(models, LABELS, accuracy, size=5)
    assert selection.weights.get("strong", 0) >= 0.5
    assert set(selection.history) <= {5 / 6, 1.0}


def test_minimising_a_loss():
    selection = greedy_selection(
        MODELS, LABELS, lambda p: log_loss(p, LABELS), size=3, maximize=False
    )
    assert selection.loss <= min(log_loss(p, LABELS) for p in MODELS.values())


def test_the_ensemble_file_round_trips(tmp_path):
    (tmp_path / "m1").mkdir()
    (tmp_path / "m2").mkdir()
    write_ensemble(tmp_path / "e", [("x", tmp_path / "m1", 0.75), ("y", tmp_path / "m2", 0.25)])
    assert read_ensemble(tmp_path / "e") == [
        ("x", (tmp_path / "m1").resolve(), 0.75),
        ("y", (tmp_path / "m2").resolve(), 0.25),
    ]
    with pytest.raises(ValueError, match="sum to 1"):
        write_ensemble(tmp_path / "f", [("x", tmp_path / "m1", 0.5)])


def test_softmax_rows_sum_to_one():
    probabilities = softmax(np.asarray([[1000.0, 0.0], [0.0, 0.0]]))
    assert probabilities.sum(axis=1) == pytest.approx([1, 1])
    assert probabilities[1, 0] == pytest.approx(0.5)
