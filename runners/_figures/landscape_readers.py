"""The readers of the landscape probes: ``runners.interpolate``'s paths and ``runners.sharpness``' probed runs.

Like every reader (:mod:`.readers`), these take a file opened with :func:`~runners._figures.readers.open_results`
and raise :class:`~runners._figures.readers.MissingData` naming the command that writes what is absent;
:func:`gain_vs_sharpness` pairs the probes with the relax runs of the same file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import h5py
import numpy as np

from results import RankCorrelation, rank_correlation, read_attrs, read_curve, read_dataset, run_key
from runners._figures.readers import (INTERPOLATE, INTERPOLATION_METHODS, RELAX, SHARPNESS, Curve, MissingData, final_cnn_acc,
                                      gain_vs_final_cnn, provenance, runs)


# --- interpolation paths ------------------------------------------------------------------------------


@dataclass(frozen=True)
class InterpolationPath:
    """One ``/interpolation/<name>`` group: its attributes and a curve per method it holds."""

    name: str
    attrs: dict[str, Any]
    curves: dict[str, Curve]
    method_attrs: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class ReferenceLine:
    """A horizontal line of Fig. 6: a model's train loss and test accuracy."""

    label: str
    train_loss: float
    test_acc: float


@dataclass(frozen=True)
class Peak:
    """The best test accuracy along one path and method, and its gain over the better endpoint.

    The numbers are the :class:`landscape.PathMetrics` that ``runners.interpolate`` stored with the curve
    (the gain is over the endpoints' measured accuracies, not over the curve's first and last points,
    which lie outside [0, 1] under ``--alpha-range``); NaN where the file lacks them.
    """

    name: str
    t_w: int | None
    method: str
    alpha: float
    peak_acc: float
    gain: float
    barrier: float | None


def interpolation_paths(store: h5py.File) -> list[InterpolationPath]:
    """Every interpolation in the file, ordered by t_w when the group records one, then by name."""
    if "interpolation" not in store or not len(store["interpolation"]):
        raise MissingData("/interpolation", INTERPOLATE)
    paths = [InterpolationPath(name=name, attrs=read_attrs(group),
                               curves={m: read_curve(group[m]) for m in INTERPOLATION_METHODS if m in group},
                               method_attrs={m: read_attrs(group[m]) for m in INTERPOLATION_METHODS if m in group})
             for name, group in store["interpolation"].items()]
    return sorted(paths, key=lambda p: (p.attrs.get("t_w", float("inf")), p.name))


def reference_lines(store: h5py.File, path: InterpolationPath) -> list[ReferenceLine]:
    """The final CNN and the FCN of a relax file, else the path's own endpoints (labelled by their spaces)."""
    if "runs" in store:
        all_runs = runs(store)
        # The final CNN is the one at --epochs (reference_*), however long matched controls trained it.
        return [ReferenceLine(name.upper(), all_runs[name].get("reference_train_loss", all_runs[name]["final_train_loss"]),
                              final_cnn_acc(all_runs[name]) if name == "cnn" else all_runs[name]["final_test_acc"])
                for name in ("cnn", "fcn") if name in all_runs]
    attrs = next(iter(path.method_attrs.values()), {})
    return [ReferenceLine(f"{attrs[f'space_{side}'].upper()} (α={alpha})", attrs[f"train_{side}_loss"], attrs[f"test_{side}_acc"])
            for side, alpha in (("a", 0), ("b", 1)) if f"space_{side}" in attrs]


def interpolation_peaks(store: h5py.File) -> list[Peak]:
    """Per path and method: the α of the best test accuracy, its gain over the better endpoint, the barrier."""
    return [Peak(name=path.name, t_w=path.attrs.get("t_w"), method=method, alpha=attrs.get("peak_test_alpha", math.nan),
                 peak_acc=attrs.get("peak_test_acc", math.nan), gain=attrs.get("test_acc_gain", math.nan), barrier=attrs.get("barrier"))
            for path in interpolation_paths(store) for method, attrs in path.method_attrs.items()]


# --- sharpness probes ---------------------------------------------------------------------------------


Coordinates = Literal["own", "efcn"]
"""Where a curvature was measured (``runners.sharpness --coordinates``): the checkpoint's own parameters,
or the eFCN's (a CNN embedded: the same function, the Hessian of the eFCN's coordinates)."""


@dataclass(frozen=True)
class BasinWidths:
    """Basin widths of a probed run's rows, with the rows whose search hit its cap marked censored.

    Attributes:
        width: mean width per row; NaN where any ray hit ``--basin-max`` (the mean is then not a width).
        std: spread over rays (NaN where censored).
        lower_bound: the stored mean, a lower bound of the width where ``censored > 0`` (equal to ``width`` elsewhere).
        censored: fraction of the row's rays that hit the cap.
    """

    width: np.ndarray
    std: np.ndarray
    lower_bound: np.ndarray
    censored: np.ndarray


@dataclass(frozen=True)
class Probed:
    """One ``/sharpness/<run>`` group: a curve row per checkpoint, its top eigenvalues and loss surfaces.

    Attributes:
        curve: ``row``, ``epoch``, ``final`` (1 for the run's final model), ``trace``, ``basin_width``, ...
            and the same measures in the eFCN's coordinates suffixed ``_efcn``.
        top_eigs: ``(rows, k)`` top Hessian eigenvalues in the checkpoint's own coordinates, descending.
        surfaces: ``surface_<row>`` curves (``axis``, ``loss``) by key.
        top_eigs_efcn: the same in the eFCN's coordinates (NaN when not probed, or in files without them).
        attrs: the group's attributes (``space``, ``coordinates``, ``seed``, ``protocol_run`` when recorded).
    """

    curve: Curve
    top_eigs: np.ndarray
    surfaces: dict[str, Curve]
    top_eigs_efcn: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def along(self) -> np.ndarray:
        """Mask of the rows probed along training (snapshots), not at the final model."""
        return self.curve["final"] == 0

    def top_eig(self, coordinates: Coordinates = "own") -> np.ndarray:
        """λ₁ of every row in ``coordinates`` (NaN where it was not measured there)."""
        eigs = self.top_eigs if coordinates == "own" else self.top_eigs_efcn
        return np.full(len(self.curve["row"]), np.nan) if eigs is None else eigs[:, 0]

    def measure(self, name: str, coordinates: Coordinates = "own") -> np.ndarray:
        """Curve column ``name`` (``trace``, ``basin_width``, ...) in ``coordinates`` (NaN where absent)."""
        column = name if coordinates == "own" else f"{name}_efcn"
        return self.curve.get(column, np.full(len(self.curve["row"]), np.nan)).astype(float)

    def basin(self, coordinates: Coordinates = "own") -> BasinWidths:
        """The rows' basin widths in ``coordinates``, censored rows as NaN with their lower bound (see :class:`BasinWidths`).

        Example:
            >>> run = Probed({"row": np.arange(2), "basin_width": np.array([0.3, 1.0]),
            ...               "basin_width_std": np.array([0.1, 0.0]), "basin_censored": np.array([0.0, 0.5])}, None, {})
            >>> run.basin().width.tolist(), run.basin().lower_bound.tolist()
            ([0.3, nan], [0.3, 1.0])
        """
        mean, std = self.measure("basin_width", coordinates), self.measure("basin_width_std", coordinates)
        censored = self.measure("basin_censored", coordinates)
        hit = ~(censored == 0)  # NaN (not recorded) counts as unknown, not as a width
        return BasinWidths(width=np.where(hit, np.nan, mean), std=np.where(hit, np.nan, std), lower_bound=mean, censored=censored)

    def last_surface(self) -> Curve | None:
        """The loss surface of the last probed row that has one."""
        return self.surfaces[max(self.surfaces, key=lambda key: int(key.split("_")[1]))] if self.surfaces else None


def sharpness_runs(store: h5py.File) -> dict[str, Probed]:
    """Every probed run of ``/sharpness``, by run name."""
    if "sharpness" not in store or not len(store["sharpness"]):
        raise MissingData("/sharpness", SHARPNESS)
    return {name: Probed(curve=read_curve(group["curve"]), top_eigs=read_dataset(group["top_eigs"]),
                         surfaces={key: read_curve(sub) for key, sub in group.items() if key.startswith("surface_")},
                         top_eigs_efcn=read_dataset(group["top_eigs_efcn"]) if "top_eigs_efcn" in group else None, attrs=read_attrs(group))
            for name, group in store["sharpness"].items()}


def figure_coordinates(probed: Mapping[str, Probed]) -> Coordinates:
    """The coordinates a cross-space figure draws: the eFCN's when the file has them (comparable), else own."""
    return "efcn" if any(np.isfinite(run.top_eig("efcn")).any() for run in probed.values()) else "own"


# --- the poster's sharpness claim: gain against λ₁ at t_w ---------------------------------------------------


@dataclass(frozen=True)
class GainVsSharpness:
    """Per (seed, t_w): the CNN's λ₁ at its t_w snapshot next to the gain of the eFCN switched there.

    Attributes:
        coordinates: where λ₁ was measured (:data:`Coordinates`; ``efcn``: the CNN embedded, comparable with an eFCN).
        t_w: each point's switch time; seed: its seed (points sorted by t_w, then seed).
        top_eig: the CNN's top Hessian eigenvalue at epoch t_w (NaN when that snapshot was not probed there).
        gain: :func:`gain_vs_final_cnn` of the run switched at t_w, paired with its own seed's CNN (fraction).
        correlation: :func:`results.rank_correlation` of ``(top_eig, gain)`` over every point that has both.
    """

    coordinates: str
    t_w: np.ndarray
    seed: np.ndarray
    top_eig: np.ndarray
    gain: np.ndarray
    correlation: RankCorrelation


def gain_vs_sharpness(store: h5py.File, coordinates: Coordinates = "efcn", space: str = "efcn") -> GainVsSharpness:
    """The poster's "the gain is highest where the landscape is sharpest", point by point.

    Runs and probes are paired by their ``protocol_run`` and ``seed`` attributes (files without them: the
    group's name and the relax configuration's seed), never by parsing names: the CNN of each seed is the
    ``/sharpness`` group of protocol run ``cnn``; its row at epoch t_w gives λ₁ for every run switched
    from that seed's CNN into ``space`` at t_w.

    Raises:
        MissingData: no CNN runs, no switched runs, or no probed CNN in the file.
    """
    all_runs = runs(store)
    default_seed = int(provenance(store)[1].get("seed", 0))

    cnn = {seed: attrs for name, attrs in all_runs.items() for protocol, seed in [run_key(name, attrs, default_seed)] if protocol == "cnn"}
    if not cnn:
        raise MissingData("the CNN runs /runs/cnn (or cnn_s<seed>)", RELAX)
    probed = {seed: run for name, run in sharpness_runs(store).items()
              for protocol, seed in [run_key(name, run.attrs, default_seed)] if protocol == "cnn"}
    if not probed:
        raise MissingData("/sharpness/cnn (the CNN's snapshots at every t_w)", SHARPNESS)
    points = []
    for name, attrs in all_runs.items():
        seed = run_key(name, attrs, default_seed)[1]
        if attrs.get("space") != space or "t_w" not in attrs or "tw1" in attrs or seed not in cnn:
            continue
        run = probed.get(seed)
        rows = np.flatnonzero(run.curve["epoch"] == attrs["t_w"]) if run is not None else np.array([], dtype=int)
        top = float(run.top_eig(coordinates)[rows[0]]) if rows.size else math.nan
        points.append((attrs["t_w"], seed, top, gain_vs_final_cnn(attrs, cnn[seed])))
    if not points:
        raise MissingData(f"{space} runs switched from the CNN", RELAX)
    t_w, seed, top, gain = (np.array(column) for column in zip(*sorted(points)))
    return GainVsSharpness(coordinates, t_w, seed.astype(int), top, gain, rank_correlation(top, gain, seed=0))
