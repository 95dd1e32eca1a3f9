"""Every read of a result file, and every quantity derived from one, defined once.

Figures and the report call these functions and draw or print what they return; none of them opens a
group of the file itself. A reader whose data are absent raises :class:`MissingData`, whose message
names the command that writes them.

Every file is opened with :func:`open_results`, the one guard against damaged or crafted files: it
checks the file's metadata before any figure reads it (``results.open_checked``), every dataset is
read with ``results.read_dataset`` (checksums verified, sizes bounded by what the file stores), and
whatever a damaged file makes a reader raise inside the block (malformed JSON attributes, nesting
deep enough for a RecursionError, attributes of the wrong type, missing keys, unreadable objects)
becomes one :class:`DamagedFile` line naming the file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import h5py
import numpy as np

from results import (DamagedStore, RankCorrelation, open_checked, rank_correlation, read_attrs, read_curve, read_dataset, run_key,
                     unfinished_runs)

RELAX = "python -m runners.relax --out DIR (or runners.reproduce)"
WEIGHTS = "python -m runners.weights --run-dir DIR (runners.reproduce runs it)"
INTERPOLATE = "python -m runners.interpolate --ckpt-a CNN.pt --ckpt-b EFCN.pt --out R.h5 (or runners.reproduce)"
SHARPNESS = "python -m runners.sharpness --run-dir DIR --out R.h5 (or runners.reproduce)"
EXPANDNETS = "python -m runners.expandnets --out DIR"
INTERPOLATION_METHODS = ("linear", "string", "output")
EXPANSION_ORDER = ("compact", "fc", "cl", "ck", "cl+fc", "ck+fc")

Curve = dict[str, np.ndarray]


class MissingData(LookupError):
    """What a figure needs is not in the file; the message names the command that writes it."""

    def __init__(self, what: str, command: str) -> None:
        super().__init__(f"needs {what}; produce it with {command}")


class DamagedFile(ValueError):
    """A result file that cannot be read as this toolkit wrote it: damaged or crafted (one line naming it)."""


@contextlib.contextmanager
def open_results(path: str | os.PathLike) -> Iterator[h5py.File]:
    """The result file ``path``, read-only, for the readers of this module; damage of any kind is one :class:`DamagedFile`.

    Raises:
        DamagedFile: the file is missing, locked by a writer, damaged (its metadata), or a reader in the
            block failed on its contents (malformed or wrongly typed attributes, missing members, a
            dataset failing its checksum or claiming more rows than the file stores).
    """
    try:
        store = open_checked(path, "r")
    except DamagedStore as err:
        raise DamagedFile(str(err)) from None
    except OSError as err:
        raise DamagedFile(f"cannot read {path} as HDF5 ({str(err).splitlines()[0] if str(err) else type(err).__name__}); "
                          "check the path, or wait for the command writing it to end") from None
    try:
        yield store
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, RecursionError, AttributeError, IndexError) as err:
        if isinstance(err, DamagedFile):
            raise
        text = str(err).splitlines()[0][:200] if str(err) else ""
        raise DamagedFile(f"{path} holds data this toolkit cannot read ({type(err).__name__}: {text}); it is damaged or was "
                          "not written by these runners: restore it (python -m runners.repair FILE) or re-create it") from None
    finally:
        store.close()


# --- relax runs -------------------------------------------------------------------------------------


def runs(store: h5py.File) -> dict[str, dict[str, Any]]:
    """Every finished run's attributes, by run name: diverged and skipped runs have no result (:func:`excluded_runs`)."""
    if "runs" not in store:
        raise MissingData("/runs (training histories)", RELAX)
    excluded = excluded_runs(store)
    return {name: read_attrs(group) for name, group in store["runs"].items() if name not in excluded}


def excluded_runs(store: h5py.File) -> dict[str, str]:
    """``{name: why}`` of the runs left out of every figure and table: diverged, or skipped for a diverged parent."""
    return unfinished_runs(store["runs"]) if "runs" in store else {}


def require_run(all_runs: Mapping[str, dict], name: str) -> dict[str, Any]:
    """The attributes of run ``name`` of :func:`runs`, or :class:`MissingData` naming the relax command."""
    if name not in all_runs:
        raise MissingData(f"the run /runs/{name}", RELAX)
    return all_runs[name]


def history(store: h5py.File, name: str) -> Curve:
    """The per-epoch history of run ``name`` (``epoch``, ``train_loss``, ..., ``test_acc``, ``delta``)."""
    return read_curve(store["runs"][name]["history"])


def switch_runs(store: h5py.File, space: str = "efcn") -> list[tuple[int, str]]:
    """(t_w, run name) of the runs embedded straight from the CNN into ``space``, by t_w."""
    found = sorted((a["t_w"], n) for n, a in runs(store).items() if a.get("space") == space and "t_w" in a and "tw1" not in a)
    if not found:
        raise MissingData(f"{space} runs switched from the CNN", RELAX)
    return found


def best_test_acc(store: h5py.File, name: str) -> float:
    """The best test accuracy run ``name`` reached at any epoch (the paper's brown FCN line in Fig. 3)."""
    return float(np.nanmax(history(store, name)["test_acc"]))


def loss_at_embedding(store: h5py.File, name: str) -> float:
    """The train loss of run ``name`` at its first recorded epoch: just after embedding (Fig. 4, middle)."""
    return float(history(store, name)["train_loss"][0])


def final_cnn_acc(cnn: Mapping[str, Any]) -> float:
    """The final CNN's test accuracy: its history row at ``reference_epoch`` (``--epochs``).

    ``runners.relax --matched-controls`` trains the CNN past ``--epochs`` (to t_w + E), so its
    ``final_test_acc`` is the longer-trained CNN's; relax records the row at ``reference_epoch`` as
    ``reference_test_acc``. Files without it (no matched controls) give ``final_test_acc``; a CNN trained
    past its ``reference_epoch`` without ``reference_test_acc`` gives NaN rather than the wrong epoch.

    Example:
        >>> final_cnn_acc({"final_test_acc": 0.9, "epochs": 90, "reference_epoch": 60, "reference_test_acc": 0.85})
        0.85
        >>> final_cnn_acc({"final_test_acc": 0.9, "epochs": 60})
        0.9
        >>> final_cnn_acc({"final_test_acc": 0.9, "epochs": 90, "reference_epoch": 60})
        nan
    """
    if "reference_test_acc" in cnn:
        return float(cnn["reference_test_acc"])
    if cnn.get("reference_epoch", cnn.get("epochs")) != cnn.get("epochs"):
        return math.nan
    return float(cnn.get("final_test_acc", math.nan))


def gain_vs_final_cnn(run: Mapping[str, Any], cnn: Mapping[str, Any]) -> float:
    """The gain of relaxing over the final CNN: the run's final test accuracy minus :func:`final_cnn_acc` (same seed).

    Both are fractions in [0, 1] (multiply by 100 for points). The reference is the CNN trained to the
    end of its budget (``--epochs``), not the CNN at the switch time t_w: the paper's Fig. 3 asks whether
    an eFCN stemmed at t_w ends up better than the CNN would have (the red curve's end). The eFCN has then
    seen t_w + E epochs, the CNN ``--epochs``: :func:`gain_vs_matched_cnn` compares equal epochs.
    NaN when the CNN's accuracy is not recorded.

    Example:
        >>> round(gain_vs_final_cnn({"final_test_acc": 0.90}, {"final_test_acc": 0.85}), 6)
        0.05
        >>> cnn = {"final_test_acc": 0.88, "epochs": 90, "reference_epoch": 60, "reference_test_acc": 0.86}
        >>> round(gain_vs_final_cnn({"final_test_acc": 0.90}, cnn), 6)  # 0.90 - 0.86, not 0.90 - 0.88
        0.04
    """
    return run["final_test_acc"] - final_cnn_acc(cnn)


relax_gain = gain_vs_final_cnn  # the name report.py and earlier callers use


def epochs_seen(run: Mapping[str, Any]) -> int:
    """Epochs a run has trained since the CNN's initialisation: its switch time(s) plus its own epochs.

    Example:
        >>> epochs_seen({"t_w": 16, "epochs": 30}), epochs_seen({"tw1": 4, "tw2": 16, "epochs": 30}), epochs_seen({"epochs": 60})
        (46, 50, 60)
    """
    return int(run["epochs"]) + sum(int(run.get(key, 0)) for key in ("t_w", "tw1", "tw2"))


def cnn_accuracy_at(store_or_runs: h5py.File | h5py.Group, seed: int, epoch: int) -> float:
    """The test accuracy of seed ``seed``'s CNN at ``epoch``: its history row (NaN when it stopped earlier).

    Args:
        store_or_runs: a relax result file (its ``/runs`` is read) or the group holding the runs.
        seed: the CNN's ``seed`` attribute (runs without one: the relax configuration's seed).
        epoch: an epoch on the CNN's clock (0: at initialisation).

    Raises:
        MissingData: no CNN run of that seed (``protocol_run`` ``cnn``, or named ``cnn`` without one).
    """
    group = store_or_runs["runs"] if isinstance(store_or_runs, h5py.File) else store_or_runs
    default_seed = json.loads(group.attrs.get("config", "{}")).get("seed", 0)
    found = [run for name, run in group.items()
             if isinstance(run, h5py.Group) and run_key(name, run.attrs, default_seed) == ("cnn", seed)]
    if not found:
        raise MissingData(f"the CNN run of seed {seed} in {group.name}", RELAX)
    curve = read_curve(found[0]["history"])
    at = np.flatnonzero(curve["epoch"] == epoch)
    return float(curve["test_acc"][at[0]]) if at.size else math.nan


def gain_vs_matched_cnn(run: Mapping[str, Any], cnn_history: Mapping[str, np.ndarray]) -> float:
    """The gain of relaxing over the CNN of as many epochs (t_w + E, same seed), read off the CNN's history.

    The run's final test accuracy minus the CNN's test accuracy at :func:`epochs_seen`: the matched control
    of ``runners.relax --matched-controls``, an eFCN switched at t_w and trained E epochs against the CNN
    trained t_w + E epochs. NaN when the CNN's history stops earlier.

    Args:
        run: the relaxed run's attributes (``final_test_acc``, ``epochs``, ``t_w`` or ``tw1`` and ``tw2``).
        cnn_history: the CNN's history (``epoch``, ``test_acc``), e.g. :func:`history`.

    Example:
        >>> cnn = {"epoch": np.arange(7), "test_acc": np.array([.1, .5, .6, .7, .75, .8, .82])}
        >>> round(gain_vs_matched_cnn({"final_test_acc": 0.78, "t_w": 2, "epochs": 3}, cnn), 6)  # 0.78 - 0.80
        -0.02
        >>> gain_vs_matched_cnn({"final_test_acc": 0.78, "t_w": 5, "epochs": 3}, cnn)
        nan
    """
    at = np.flatnonzero(np.asarray(cnn_history["epoch"]) == epochs_seen(run))
    return run["final_test_acc"] - (float(cnn_history["test_acc"][at[0]]) if at.size else math.nan)


@dataclass(frozen=True)
class RelaxGains:
    """:func:`gain_vs_final_cnn` of every run switched from the CNN into one space, by t_w.

    Attributes:
        t_w: relax times (CNN epochs), ascending.
        gain: :func:`gain_vs_final_cnn` of the run relaxed at each t_w (fraction, not points).
        runs: the run names, aligned with ``t_w``.
    """

    t_w: np.ndarray
    gain: np.ndarray
    runs: tuple[str, ...]


def relax_gains(store: h5py.File, space: str = "efcn") -> RelaxGains:
    """:func:`gain_vs_final_cnn` of every run switched from the CNN into ``space`` (needs ``/runs/cnn``)."""
    all_runs = runs(store)
    cnn = require_run(all_runs, "cnn")
    found = switch_runs(store, space)
    return RelaxGains(t_w=np.array([t for t, _ in found]), gain=np.array([gain_vs_final_cnn(all_runs[n], cnn) for _, n in found]),
                      runs=tuple(n for _, n in found))


def provenance(store: h5py.File) -> tuple[dict[str, Any], dict[str, Any]]:
    """Who made the file and with what: its root attributes, and the relax result's decoded ``config``.

    The root holds the provenance of the file's creator (command, versions, commit, time; for a merged
    reproduction, the ``runners.reproduce`` command). The configuration (data set, architecture) is the
    relax result's, stored on ``/runs`` by the result writer; files written before it kept it at the root.
    """
    attrs = read_attrs(store)
    relax = read_attrs(store["runs"]) if "runs" in store else {}
    return attrs, json.loads(relax.get("config", attrs.get("config", "{}")))


# --- weights copied by runners.weights ----------------------------------------------------------------


@dataclass(frozen=True)
class WeightPanel:
    """One eFCN weight block of ``/weights/fig2`` or ``/weights/fig5``, at embedding and after training."""

    t_w: int
    epochs: int | None
    embedded: np.ndarray
    trained: np.ndarray


def filter_index(store: h5py.File) -> np.ndarray:
    """Fig. 1's matrix: the filter entry each eFCN weight holds (-1 off-local)."""
    if "weights/fig1" not in store:
        raise MissingData("/weights/fig1", WEIGHTS)
    return read_dataset(store["weights/fig1/filter_index"])


def weight_panels(store: h5py.File, figure: str) -> list[WeightPanel]:
    """The weight blocks of ``/weights/<figure>`` (``fig2`` or ``fig5``), by t_w."""
    if f"weights/{figure}" not in store or not len(store[f"weights/{figure}"]):
        raise MissingData(f"/weights/{figure}", WEIGHTS)
    panels = [WeightPanel(t_w=(a := read_attrs(g))["t_w"], epochs=a.get("epochs"), embedded=read_dataset(g["embedded"]), trained=read_dataset(g["trained"]))
              for g in store[f"weights/{figure}"].values()]
    return sorted(panels, key=lambda p: p.t_w)


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


# --- ExpandNets runs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpandRun:
    """One finished ExpandNets run: its history and, when recorded, final gradient cosines and 1-D surface."""

    history: Curve
    final_cosines: np.ndarray | None
    surface_1d: Curve | None
    attrs: dict[str, Any] = field(default_factory=dict)  # the run group's attributes (seed, compressed_test_acc, ...)


# Where ExpandNets runs live: ``/runs`` of expandnets.h5, or under ``/expandnets`` once merged into a reproduction.
EXPANDNETS_GROUPS = ("runs", "expandnets/runs", "expandnets")


def expandnets_group(store: h5py.File) -> str | None:
    """The first of :data:`EXPANDNETS_GROUPS` holding a run group with an ExpandNets ``mode`` attribute, else None."""
    for path in EXPANDNETS_GROUPS:
        if path in store and isinstance(store[path], h5py.Group):
            if any(isinstance(child, h5py.Group) and "mode" in child.attrs for child in store[path].values()):
                return path
    return None


def expandnets_runs(store: h5py.File, group: str | None = None) -> dict[str, list[ExpandRun]]:
    """The finished ExpandNets runs grouped by expansion (``mode``, `` (product L2)`` with that penalty), in paper order.

    Args:
        group: the HDF5 group holding the runs (``"runs"`` in expandnets.h5, ``"expandnets/runs"`` or
            ``"expandnets"`` in a merged file); default: the first of :data:`EXPANDNETS_GROUPS` that holds them.
    """
    groups: dict[str, list[ExpandRun]] = defaultdict(list)
    path = group or expandnets_group(store)
    for group in (store[path].values() if path and path in store else ()):
        attrs = read_attrs(group)
        if "mode" in attrs and attrs.get("status") == "done":
            label = attrs["mode"] + (" (product L2)" if attrs.get("l2") == "product" else "")
            groups[label].append(ExpandRun(history=read_curve(group["history"]),
                                           final_cosines=read_dataset(group["final_cosines"]["cosine"]) if "final_cosines" in group else None,
                                           surface_1d=read_curve(group["surface_1d"]) if "surface_1d" in group else None,
                                           attrs=attrs))
    if not groups:
        raise MissingData("ExpandNets runs (/runs/<mode>_seed<k>)", EXPANDNETS)

    def order(label: str) -> tuple[int, str]:
        mode = label.split()[0]
        return (EXPANSION_ORDER.index(mode) if mode in EXPANSION_ORDER else len(EXPANSION_ORDER), label)

    return {label: groups[label] for label in sorted(groups, key=order)}
