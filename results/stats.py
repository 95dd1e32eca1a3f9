"""Seed statistics, defined once: mean with a Student-t 95% interval, paired differences, rank correlation.

Every number a reproduction reports over seeds goes through this module, so a figure, a table of the
report and an attribute of the HDF5 file agree to the last digit.

* :func:`summarize` -- mean, sample standard deviation (``ddof=1``) and the Student-t 95% confidence
  interval of the mean, :math:`\\bar x \\pm t_{0.975,\\,n-1}\\, s/\\sqrt{n}`; NaNs are dropped first.
* :func:`paired` -- :func:`summarize` of the per-seed differences :math:`a_i - b_i` (same seed), which
  removes the seed-to-seed variance the two conditions share.
* :func:`rank_correlation` -- Spearman's :math:`\\rho` with a percentile-bootstrap 95% interval
  (pairs resampled with replacement, an explicit ``seed``).

Example:
    >>> s = summarize([1.0, 2.0, 3.0])
    >>> s.mean, s.std, s.n
    (2.0, 1.0, 3)
    >>> from scipy.stats import t
    >>> bool(abs(s.ci_high - (2 + t.ppf(0.975, 2) / 3 ** 0.5)) < 1e-12)
    True
    >>> sorted(s.as_attrs("final_test_acc"))[:2]
    ['final_test_acc_ci_high', 'final_test_acc_ci_low']
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as _scipy_stats

CONFIDENCE = 0.95
"""The level of every interval this module reports (two-sided)."""


@dataclass(frozen=True)
class Summary:
    """Mean of ``n`` values with their sample standard deviation and the Student-t 95% CI of the mean.

    Attributes:
        mean: arithmetic mean (NaN when ``n == 0``).
        std: sample standard deviation, ``ddof=1`` (NaN when ``n < 2``).
        ci_low: lower end of the 95% confidence interval of the mean (NaN when ``n < 2``).
        ci_high: upper end (NaN when ``n < 2``).
        n: number of finite values summarised.
    """

    mean: float
    std: float
    ci_low: float
    ci_high: float
    n: int

    @property
    def half_width(self) -> float:
        """Half the width of the confidence interval (NaN when it is undefined)."""
        return (self.ci_high - self.ci_low) / 2

    def as_attrs(self, prefix: str) -> dict[str, float | int]:
        """The summary as HDF5 attributes ``<prefix>_mean``, ``_std``, ``_ci_low``, ``_ci_high``, ``_n``.

        Example:
            >>> summarize([4.0]).as_attrs("gain")["gain_n"]
            1
        """
        return {f"{prefix}_{key}": value for key, value in asdict(self).items()}


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rank correlation with its percentile-bootstrap 95% interval.

    Attributes:
        rho: Spearman's rho of all pairs (NaN when fewer than 2 pairs or a constant input).
        ci_low: 2.5th percentile of the bootstrap distribution (NaN when ``n < 3``).
        ci_high: 97.5th percentile (NaN when ``n < 3``).
        n: number of finite pairs used.
    """

    rho: float
    ci_low: float
    ci_high: float
    n: int


def _finite(values: Iterable[float]) -> np.ndarray:
    array = np.asarray(list(values), dtype=np.float64).ravel()
    return array[~np.isnan(array)]


def summarize(values: Iterable[float]) -> Summary:
    """Mean, sample std and Student-t 95% confidence interval of ``values`` (NaNs dropped).

    The interval is :math:`\\bar x \\pm t_{0.975,\\,n-1}\\, s / \\sqrt{n}` with :math:`s` the sample
    standard deviation (``ddof=1``). One value has no spread: its std and interval are NaN.

    Args:
        values: per-seed numbers; NaN marks a missing seed and is dropped.

    Returns:
        The :class:`Summary`.

    Example:
        >>> summarize([5.0, float("nan")])
        Summary(mean=5.0, std=nan, ci_low=nan, ci_high=nan, n=1)
    """
    array = _finite(values)
    n = int(array.size)
    if n == 0:
        return Summary(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(array.mean())
    if n == 1:
        return Summary(mean, math.nan, math.nan, math.nan, 1)
    std = float(array.std(ddof=1))
    half = float(_scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n)
    return Summary(mean, std, mean - half, mean + half, n)


def paired(a: Iterable[float], b: Iterable[float]) -> Summary:
    """:func:`summarize` of the per-seed differences ``a[i] - b[i]`` (the same seed at index ``i``).

    A pair with a NaN on either side is dropped.

    Args:
        a: per-seed values of the first condition (e.g. an eFCN's final test accuracy).
        b: the same seeds' values of the reference (e.g. the CNN's), in the same order.

    Returns:
        The :class:`Summary` of the differences.

    Raises:
        ValueError: when ``a`` and ``b`` do not have the same length.

    Example:
        >>> paired([3.0, 5.0], [1.0, 2.0]).mean
        2.5
    """
    first, second = np.asarray(list(a), dtype=np.float64), np.asarray(list(b), dtype=np.float64)
    if first.shape != second.shape:
        raise ValueError(
            f"paired needs one value per seed on both sides, got {first.size} and {second.size}; pass the same seeds in the same order"
        )
    return summarize(first - second)


def rank_correlation(
    x: Iterable[float], y: Iterable[float], *, seed: int = 0, resamples: int = 2000
) -> RankCorrelation:
    """Spearman's rho of ``(x[i], y[i])`` with a percentile-bootstrap 95% confidence interval.

    The pairs are resampled with replacement ``resamples`` times (a ``numpy`` generator seeded with
    ``seed``, so the interval is reproducible); a resample whose ranks are constant has no rho and is
    left out of the percentiles. Pairs with a NaN are dropped.

    Args:
        x: first variable (e.g. the CNN's sharpness at t_w), one value per point.
        y: second variable (e.g. the relaxed run's gain), same length.
        seed: seed of the bootstrap resampling.
        resamples: number of bootstrap resamples.

    Returns:
        The :class:`RankCorrelation`.

    Raises:
        ValueError: when ``x`` and ``y`` differ in length or ``resamples < 1``.

    Example:
        >>> round(rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]).rho, 12)
        1.0
    """
    first, second = np.asarray(list(x), dtype=np.float64), np.asarray(list(y), dtype=np.float64)
    if first.shape != second.shape:
        raise ValueError(
            f"rank_correlation needs one y per x, got {first.size} and {second.size}; pass paired values"
        )
    if resamples < 1:
        raise ValueError(f"rank_correlation needs resamples >= 1, got {resamples}")
    keep = ~(np.isnan(first) | np.isnan(second))
    first, second = first[keep], second[keep]
    n = int(first.size)
    if n < 2:
        return RankCorrelation(math.nan, math.nan, math.nan, n)
    rho = _spearman(first, second)
    if n < 3:
        return RankCorrelation(rho, math.nan, math.nan, n)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    boot = np.array([_spearman(first[i], second[i]) for i in draws])
    boot = boot[~np.isnan(boot)]
    if boot.size == 0:
        return RankCorrelation(rho, math.nan, math.nan, n)
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(boot, [tail, 100 - tail])
    return RankCorrelation(rho, float(low), float(high), n)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    # a constant input has no ranks to correlate: NaN, without scipy's ConstantInputWarning
    if np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan
    return float(_scipy_stats.spearmanr(x, y).statistic)
