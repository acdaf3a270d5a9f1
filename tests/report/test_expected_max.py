"""The expected-best estimator against small cases computed by hand."""

from itertools import combinations

import numpy as np
import pytest

from harness.report.expected_max import expected_max, expected_max_curve


def test_three_values_by_hand():
    # subsets of 2 of {0.1, 0.2, 0.3}: best 0.2, 0.3, 0.3 -> mean 0.8 / 3
    assert expected_max([0.1, 0.3, 0.2]) == pytest.approx([0.2, 0.8 / 3, 0.3])
    # expected minimum: worst of each pair 0.1, 0.1, 0.2 -> 0.4 / 3
    assert expected_max([0.1, 0.3, 0.2], "minimize") == pytest.approx([0.2, 0.4 / 3, 0.1])


def test_equals_the_mean_best_over_every_subset():
    values = [0.55, 0.81, 0.78, 0.55, 0.80, 0.63, 0.82]
    for n, got in enumerate(expected_max(values), 1):
        bests = [max(s) for s in combinations(values, n)]
        assert got == pytest.approx(np.mean(bests))


def test_unbiased_not_dodges_with_replacement():
    # Dodge et al.'s estimator draws with replacement: E[max of 2 of {0, 1}] = 3/4; over the
    # two subsets without replacement it is 1 (the only subset holds both)
    assert expected_max([0.0, 1.0])[1] == pytest.approx(1.0)


def test_curve_band_holds_the_estimate_and_ends_at_the_best():
    values = [0.55, 0.81, 0.78, 0.55, 0.80, 0.63, 0.82, 0.79]
    curve = expected_max_curve(values, resamples=200, seed=1)
    assert list(curve.trials) == list(range(1, 9))
    assert curve.mean[-1] == pytest.approx(max(values))
    assert np.all(np.diff(curve.mean) >= 0)
    assert np.all(curve.low <= curve.mean + 1e-12) and np.all(curve.mean <= curve.high + 1e-12)
    assert curve.low[0] < curve.high[0]


def test_no_values_is_an_error():
    with pytest.raises(ValueError, match="at least one"):
        expected_max_curve([])
