"""Expected best validation score against the number of trials ("Show Your Work", Dodge et al.
2019), with the unbiased estimator of Tang et al. 2020 and a bootstrap band.

From N trial values, the expected maximum of n trials (n = 1 … N) is the mean, over every subset
of n of the N values, of the subset's best: with the values sorted worst first
(v_1 … v_N), ``E[max_n] = Σ_{i=n..N} v_i · C(i-1, n-1) / C(N, n)``. Unlike Dodge's estimator
(n draws *with* replacement from the N values), it is unbiased, and at n = N it is the best
value itself. The band: the same curve over bootstrap resamples of the N values.

The estimate treats the trials as independent draws of one search; a model-based sampler
(TPE) samples later trials after earlier ones, so read the curve as an approximation.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np


def expected_max(values: list[float] | np.ndarray, direction: str = "maximize") -> np.ndarray:
    """``E[best of n trials]`` for n = 1 … len(values), unbiased (subsets without replacement).

    ``direction="minimize"`` gives the expected minimum."""
    v = np.sort(np.asarray(values, dtype=float))
    if direction == "minimize":
        return -expected_max(-v)
    if v.size == 0:
        return np.empty(0)
    total = v.size
    out = np.empty(total)
    for n in range(1, total + 1):
        weights = np.array([comb(i - 1, n - 1) for i in range(1, total + 1)], dtype=float)
        out[n - 1] = float(weights @ v) / comb(total, n)
    return out


@dataclass(frozen=True)
class ExpectedMaxCurve:
    """The curve and its bootstrap band, one point per number of trials (1 … N)."""

    trials: np.ndarray  # 1 … N
    mean: np.ndarray  # expected best of n trials
    low: np.ndarray  # bootstrap band (5th percentile by default)
    high: np.ndarray  # (95th)


def expected_max_curve(
    values: list[float],
    direction: str = "maximize",
    resamples: int = 1000,
    band: float = 0.9,
    seed: int = 0,
) -> ExpectedMaxCurve:
    """:func:`expected_max` with a bootstrap band covering ``band`` of the resampled curves."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("the expected best needs at least one trial value")
    rng = np.random.default_rng(seed)
    curves = np.stack(
        [
            expected_max(rng.choice(v, size=v.size, replace=True), direction)
            for _ in range(resamples)
        ]
    )
    tail = (1.0 - band) / 2 * 100
    return ExpectedMaxCurve(
        trials=np.arange(1, v.size + 1),
        mean=expected_max(v, direction),
        low=np.percentile(curves, tail, axis=0),
        high=np.percentile(curves, 100 - tail, axis=0),
    )
