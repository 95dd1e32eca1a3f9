"""Piecewise-linear paths in weight space and the metrics reported for every interpolation.

A path is a polyline through knots :math:`\\theta_0, \\dots, \\theta_{M-1}` placed at
:math:`\\alpha_k = k/(M-1)`: the linear path is the case :math:`M = 2`, the elastic string has
:math:`M` points. Beyond :math:`[0, 1]` the first and last segments are extended (extrapolation).

Metrics (the same definitions for every method; Garipov et al. 2018 and Draxler et al. 2018 report
barriers, d'Ascoli et al. 2019 the accuracy gain inside the path):

* barrier height :math:`\\max_{\\alpha \\in [0,1]} L(\\alpha) - [(1-\\alpha) L(0) + \\alpha L(1)]`
  of the training loss (0 on a convex path, > 0 over a bump);
* the :math:`\\alpha` of the peak test accuracy and its gain over the better endpoint;
* the length of the path in weight space over the evaluated range of :math:`\\alpha`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from landscape._types import Params

__all__ = ["PathMetrics", "path_metrics", "barrier_height", "polyline_point", "polyline_length"]


@dataclass(frozen=True)
class PathMetrics:
    """Summary of one path.

    Attributes:
        barrier: train-loss barrier height over :math:`[0, 1]` (NaN when no evaluated alpha is in it).
        barrier_alpha: where the barrier is highest.
        peak_test_acc: highest test accuracy along the path (NaN without test data).
        peak_test_alpha: where it is reached.
        test_acc_gain: ``peak_test_acc`` minus the better endpoint's test accuracy.
        length: Euclidean length of the path in weight space over the evaluated alphas (NaN for
            output-space averaging, which has no weight-space path).
    """

    barrier: float
    barrier_alpha: float
    peak_test_acc: float
    peak_test_alpha: float
    test_acc_gain: float
    length: float

    def as_dict(self) -> dict[str, float]:
        """The metrics as plain floats (for HDF5 attributes and tables)."""
        return {name: float(getattr(self, name)) for name in self.__dataclass_fields__}


def barrier_height(alpha: Sequence[float], loss: Sequence[float], loss_a: float, loss_b: float) -> tuple[float, float]:
    """Height and location of :math:`\\max_{\\alpha\\in[0,1]} L(\\alpha) - [(1-\\alpha)L_a + \\alpha L_b]`.

    The excess over the chord, not over :math:`\\max(L_a, L_b)`. With both endpoints sampled it is at
    least their excess, zero up to rounding: a path that never rises above its chord (the output
    method's, convex in α) can come out a few ulps below zero, and the value is returned as computed.

    Example (a parabola of height 1 over the chord):
        >>> alpha = np.linspace(0, 1, 5)
        >>> barrier_height(alpha, 4 * alpha * (1 - alpha) + 2 * alpha, 0.0, 2.0)
        (1.0, 0.5)
    """
    alpha, loss = np.asarray(alpha, dtype=np.float64), np.asarray(loss, dtype=np.float64)
    inside = (alpha >= 0) & (alpha <= 1)
    if not inside.any():
        return math.nan, math.nan
    excess = loss[inside] - ((1 - alpha[inside]) * loss_a + alpha[inside] * loss_b)
    top = int(np.argmax(excess))
    return float(excess[top]), float(alpha[inside][top])


def path_metrics(
    alpha: Sequence[float],
    train_loss: Sequence[float],
    test_acc: Sequence[float],
    *,
    endpoint_train_loss: tuple[float, float],
    endpoint_test_acc: tuple[float, float],
    length: float,
) -> PathMetrics:
    """The :class:`PathMetrics` of curves evaluated at ``alpha`` (NaN test accuracies: no test data)."""
    barrier, barrier_alpha = barrier_height(alpha, train_loss, *endpoint_train_loss)
    test_acc = np.asarray(test_acc, dtype=np.float64)
    if np.isnan(test_acc).all():
        peak, peak_alpha, gain = math.nan, math.nan, math.nan
    else:
        top = int(np.nanargmax(test_acc))
        peak, peak_alpha = float(test_acc[top]), float(np.asarray(alpha, dtype=np.float64)[top])
        gain = peak - max(endpoint_test_acc)
    return PathMetrics(barrier, barrier_alpha, peak, peak_alpha, gain, float(length))


def _num_knots(knots: Params) -> int:
    return int(next(iter(knots.values())).shape[0])


def polyline_point(knots: Params, alpha: float) -> dict[str, torch.Tensor]:
    """The point at ``alpha`` of the polyline through stacked ``knots`` (``{name: (M, *shape)}``).

    Example:
        >>> knots = {"w": torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])}
        >>> polyline_point(knots, 0.75)["w"].tolist(), polyline_point(knots, -1.0)["w"].tolist()
        ([1.0, 0.5], [-2.0, 0.0])
    """
    segments = _num_knots(knots) - 1
    position = alpha * segments
    index = min(max(math.floor(position), 0), segments - 1)
    local = position - index
    return {name: torch.lerp(t[index], t[index + 1], local) for name, t in knots.items()}


def polyline_length(knots: Params, lo: float, hi: float) -> float:
    """Euclidean length of the polyline between ``alpha = lo`` and ``alpha = hi`` (extended segments included).

    Example:
        >>> knots = {"w": torch.tensor([[0.0, 0.0], [3.0, 0.0], [3.0, 4.0]])}
        >>> polyline_length(knots, 0.0, 1.0), polyline_length(knots, -0.5, 0.5)
        (7.0, 6.0)
    """
    segments = _num_knots(knots) - 1
    steps = {name: (t[1:] - t[:-1]).flatten(1).double() for name, t in knots.items()}
    lengths = torch.sqrt(sum(s.pow(2).sum(1) for s in steps.values())).tolist()
    total = 0.0
    for k, length in enumerate(lengths):
        start = -math.inf if k == 0 else k / segments
        stop = math.inf if k == segments - 1 else (k + 1) / segments
        overlap = max(0.0, min(hi, stop) - max(lo, start))
        total += length * segments * overlap
    return total
