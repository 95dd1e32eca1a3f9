"""How a quantity over seeds is drawn: the mean, its 95% CI as a band or error bars, the per-seed points."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from runners._figures.seed_readers import SeedStats


def draw_band(ax: plt.Axes, stats: SeedStats, *, scale: float = 1.0, x: np.ndarray | None = None, seeds: bool = True,
              fmt: str = "o-", **style: Any) -> plt.Line2D:
    """The mean as a line with its 95% CI as a shaded band (drawn only where the CI exists: 2+ seeds).

    Args:
        ax: where to draw.
        stats: the quantity over points and seeds.
        scale: multiplies every value (100 for fractions shown in points).
        x: the abscissa (default ``stats.x``).
        seeds: also draw each seed's value as a small faint dot (only with 2+ seeds).
        fmt, style: the mean line's format and keywords (``label``, ``color``...).

    Returns:
        The mean line.
    """
    x = stats.x if x is None else x
    line, = ax.plot(x, scale * stats.mean, fmt, **style)
    if np.isfinite(stats.ci_low).any():
        ax.fill_between(x, scale * stats.ci_low, scale * stats.ci_high, color=line.get_color(), alpha=0.2, lw=0)
    if seeds and len(stats.seeds) > 1:
        ax.plot(np.repeat(x, len(stats.seeds)), scale * stats.values.ravel(), ".", color=line.get_color(), alpha=0.35, ms=4)
    return line


def draw_errorbars(ax: plt.Axes, x: SeedStats | np.ndarray, y: SeedStats, *, scale_x: float = 1.0, scale_y: float = 1.0,
                   seeds: bool = True, fmt: str = "o", **style: Any) -> Any:
    """Means with 95% CI error bars on y (and on x when ``x`` is a :class:`SeedStats` too), plus per-seed points.

    Returns:
        The matplotlib errorbar container.
    """
    xs = x if isinstance(x, SeedStats) else None
    x_mean = scale_x * (xs.mean if xs is not None else np.asarray(x))
    container = ax.errorbar(x_mean, scale_y * y.mean, yerr=_half_widths(y, scale_y),
                            xerr=_half_widths(xs, scale_x) if xs is not None else None, fmt=fmt, capsize=3, **style)
    if seeds and len(y.seeds) > 1:
        x_seeds = scale_x * (xs.values if xs is not None else np.repeat(np.asarray(x)[:, None], len(y.seeds), 1))
        ax.plot(x_seeds.ravel(), scale_y * y.values.ravel(), ".", color=container[0].get_color(), alpha=0.35, ms=4)
    return container


def _half_widths(stats: SeedStats, scale: float) -> np.ndarray | None:
    if not np.isfinite(stats.ci_low).any():
        return None  # one seed: no CI, plain markers
    low = np.nan_to_num(stats.mean - stats.ci_low)
    high = np.nan_to_num(stats.ci_high - stats.mean)
    return scale * np.vstack([low, high])


def outside_legend(ax: plt.Axes, **kwargs: Any) -> None:
    """A legend right of the axes, so that it never covers data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8, **kwargs)


def n_seeds_note(*stats: SeedStats, dots: bool = True) -> str:
    """``"mean ± 95% CI over n seeds"`` (``dots``: and that the dots are the seeds), or ``"one seed"``, for a title."""
    n = max(len(s.seeds) for s in stats)
    return "one seed, no CI" if n < 2 else f"mean ± 95% CI over {n} seeds" + ("; dots: seeds" if dots else "")
