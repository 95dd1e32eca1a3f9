"""The verdict of a claim from its estimates: the one rule stated in :mod:`runners._figures.claims`.

A claim is tested by a statistic with a claimed :class:`Region`; each estimate of it (one :class:`Part`
per t_w, or a single one) carries a 95% CI over seeds. :func:`decide` turns one part into holds / fails /
inconclusive, :func:`combine` a claim over several parts, and :func:`measured` builds the :class:`Claim`.
:func:`claim` registers a claim function with its wording and source, and turns missing data into a
"not measured" row naming the command that produces them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

import h5py
import numpy as np

from results import paired, rank_correlation, summarize
from runners._figures.readers import RELAX, MissingData

Verdict = Literal["holds", "fails", "inconclusive", "not measured"]
Mode = Literal["all", "any"]


@dataclass(frozen=True)
class Region:
    """The claimed region of a statistic: ``low < S < high`` (one end may be infinite).

    Example:
        >>> Region(low=0.0).text(100), Region(-0.01, 0.01).text(100)
        ('> 0', 'in [-1, 1]')
    """

    low: float = -math.inf
    high: float = math.inf

    def text(self, scale: float = 1.0) -> str:
        """The region as the table prints it, in display units (``scale`` multiplies the bounds)."""
        if math.isinf(self.high):
            return f"> {self.low * scale:g}"
        if math.isinf(self.low):
            return f"< {self.high * scale:g}"
        return f"in [{self.low * scale:g}, {self.high * scale:g}]"


@dataclass(frozen=True)
class Part:
    """One estimate of a statistic: a whole claim, or one t_w of it.

    Attributes:
        label: which part (``t_w = 4``), empty for a claim with one part.
        estimate, ci_low, ci_high: the statistic and its 95% CI (NaN without one).
        n: seeds behind the estimate.
        exact: no sampling error (parameter counts): decided on the estimate itself.
        bound: ``"lower"`` (``"upper"``) when the true value is only known to be above (below) the estimate,
            ``"both"`` when it is unknown in both directions (censored basin widths on both sides).
    """

    label: str
    estimate: float
    ci_low: float
    ci_high: float
    n: int
    exact: bool = False
    bound: Literal["lower", "upper", "both"] | None = None


@dataclass(frozen=True)
class Claim:
    """A claim, the statistic testing it, the deciding estimate and its verdict.

    Attributes:
        text: the claim in one line.
        source: where it is made (``paper Fig. 3``, ``supp. Fig. 4 left``, ``poster``).
        statistic: what is measured, with its claimed region in display units.
        part: the deciding estimate (None when not measured).
        verdict: holds / fails / inconclusive / not measured.
        note: why an inconclusive verdict (``1 seed``), or the command producing missing data.
        scale: multiplies the estimate for display (100: fractions shown in points).
        unit: display unit of the estimate.
    """

    text: str
    source: str
    statistic: str
    part: Part | None
    verdict: Verdict
    note: str = ""
    scale: float = 1.0
    unit: str = ""

    def value_text(self) -> str:
        """The deciding estimate as the table prints it: ``value [ci_low, ci_high] (part)`` in display units."""
        part = self.part
        if part is None:
            return "-"
        if math.isnan(part.estimate):
            return "undefined" + (f" ({part.label})" if part.label else "")
        fmt = ".3g" if part.exact else "+.2f" if self.unit == "points" else "+.3g"
        value = f"{part.estimate * self.scale:{fmt}}"
        if not part.exact and math.isfinite(part.ci_low):
            value += f" [{part.ci_low * self.scale:{fmt}}, {part.ci_high * self.scale:{fmt}}]"
        return value + (f" ({part.label})" if part.label else "")


def paired_part(label: str, a: Mapping[int, float], b: Mapping[int, float]) -> Part:
    """:func:`results.paired` of ``a - b`` over the seeds both have (dicts by seed)."""
    seeds = sorted(set(a) & set(b))
    s = paired([a[k] for k in seeds], [b[k] for k in seeds])
    return Part(label, s.mean, s.ci_low, s.ci_high, s.n)


def mean_part(label: str, values: Iterable[float]) -> Part:
    """:func:`results.summarize` of per-seed values."""
    s = summarize(list(values))
    return Part(label, s.mean, s.ci_low, s.ci_high, s.n)


def correlation_part(x: list[float], y: list[float], seeds: list[int]) -> Part:
    """:func:`results.rank_correlation` of the points ``(x, y)``; ``n`` counts the seeds behind them."""
    r = rank_correlation(x, y, seed=0)
    n_seeds = len({s for s, a, b in zip(seeds, x, y) if np.isfinite(a) and np.isfinite(b)})
    return Part(f"{r.n} points", r.rho, r.ci_low, r.ci_high, n_seeds)


def decide(part: Part, region: Region) -> tuple[Verdict, str]:
    """The verdict of one estimate, and the note explaining an inconclusive one.

    holds: the CI lies entirely inside ``region``; fails: entirely outside; inconclusive otherwise, and
    always below 2 seeds. An exact part is decided on its value. A one-sided ``bound`` keeps only the
    verdict that the unknown direction cannot overturn.

    Example:
        >>> decide(Part("", 0.02, 0.01, 0.03, n=3), Region(low=0.0))
        ('holds', '')
        >>> decide(Part("", -0.02, -0.03, -0.01, n=3), Region(low=0.0))
        ('fails', '')
        >>> decide(Part("", 0.02, -0.01, 0.05, n=3), Region(low=0.0))
        ('inconclusive', '')
        >>> decide(Part("", 0.02, math.nan, math.nan, n=1), Region(low=0.0))
        ('inconclusive', '1 seed')
    """
    if part.exact:
        low = high = part.estimate
    else:
        if part.n < 2:
            return "inconclusive", "1 seed" if part.n == 1 else "no finite values"
        low, high = part.ci_low, part.ci_high
    if math.isnan(part.estimate):
        return "inconclusive", "undefined (no variation)"
    if math.isnan(low) or math.isnan(high):
        return "inconclusive", "no confidence interval"
    up, down = part.bound in ("lower", "both"), part.bound in ("upper", "both")
    # the true value may lie above (up) or below (down) the estimate: it may leave a bounded region that way
    if low > region.low and high < region.high and not (up and math.isfinite(region.high)) and not (down and math.isfinite(region.low)):
        return "holds", ""
    if (high < region.low and not up) or (low > region.high and not down):
        return "fails", ""
    return "inconclusive", "censored basin widths" if part.bound else ""


def _margin(part: Part, region: Region) -> float:
    """How far the estimate lies inside the region (negative: outside)."""
    if math.isnan(part.estimate):
        return -math.inf
    return min(part.estimate - region.low, region.high - part.estimate)


def combine(parts: list[Part], region: Region, mode: Mode) -> tuple[Part, Verdict, str]:
    """The verdict of a claim over several parts, and the part that decides it.

    ``all``: holds when every part holds, fails when one fails; ``any``: holds when one part holds, fails
    when every part fails; inconclusive otherwise. The deciding part has the claim's verdict and is the
    closest to failing (``all``) or the furthest inside the region (``any``).

    Example:
        >>> parts = [Part("a", 2.0, 1.0, 3.0, 3), Part("b", 0.5, -1.0, 2.0, 3)]
        >>> [(p.label, v) for p, v, _ in (combine(parts, Region(low=0.0), m) for m in ("all", "any"))]
        [('b', 'inconclusive'), ('a', 'holds')]
    """
    decided = [(part, *decide(part, region)) for part in parts]
    verdicts = {verdict for _, verdict, _ in decided}
    if mode == "all":
        verdict = "fails" if "fails" in verdicts else "holds" if verdicts == {"holds"} else "inconclusive"
    else:
        verdict = "holds" if "holds" in verdicts else "fails" if verdicts == {"fails"} else "inconclusive"
    candidates = [d for d in decided if d[1] == verdict]
    part, _, note = (min if mode == "all" else max)(candidates, key=lambda d: _margin(d[0], region))
    return part, verdict, note


def measured(statistic: str, parts: list[Part], region: Region, *, mode: Mode = "all", scale: float = 1.0, unit: str = "",
             command: str = RELAX) -> Claim:
    """A claim's row from its parts (wording and source are filled in by :func:`claim`).

    Raises:
        MissingData: naming ``command``, when no part rests on a seed (the file lacks what they need).
    """
    shown = f"{statistic} {region.text(scale)}{' ' + unit if unit else ''}"
    if not any(part.n for part in parts):
        raise MissingData(f"values for: {shown}", command)
    part, verdict, note = combine(parts, region, mode)
    return Claim("", "", shown, part, verdict, note, scale, unit)


def claim(text: str, source: str) -> Callable[[Callable[[h5py.File], Claim]], Callable[[h5py.File], Claim]]:
    """Give a claim function its wording and source; missing data become a "not measured" row.

    Example:
        >>> @claim("x", "poster")
        ... def nothing(store):
        ...     raise MissingData("/runs", "python -m runners.relax")
        >>> row = nothing(None)
        >>> row.verdict, row.note
        ('not measured', 'needs /runs; produce it with python -m runners.relax')
    """

    def wrap(function: Callable[[h5py.File], Claim]) -> Callable[[h5py.File], Claim]:
        @functools.wraps(function)
        def checked(store: h5py.File) -> Claim:
            try:
                return replace(function(store), text=text, source=source)
            except MissingData as missing:
                return Claim(text, source, "", None, "not measured", str(missing))

        return checked

    return wrap
