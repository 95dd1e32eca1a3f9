"""Readers over seeds: runs grouped by protocol run, and every plotted point as a mean with its 95% CI.

A run group carries the attributes ``protocol_run`` (its name without the ``_s<seed>`` suffix) and ``seed``;
files written before seeds were added carry neither, and then the run's name is its protocol run and the
relax configuration's ``seed`` its seed. Runs are grouped by these attributes, never by parsing names.
Every summary is :func:`results.summarize` (Student-t 95% CI; one seed: CI NaN) or :func:`results.paired`
(per-seed differences, same seed), so a figure draws the numbers the report prints.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import h5py
import numpy as np

from results import Summary, paired, read_attrs, read_curve, run_key, summarize
from runners._figures.landscape_readers import (InterpolationPath, ReferenceLine, Coordinates, interpolation_paths, reference_lines,
                                                sharpness_runs)
from runners._figures.readers import (INTERPOLATE, INTERPOLATION_METHODS, RELAX, MissingData, SHARPNESS, final_cnn_acc, gain_vs_final_cnn,
                                      gain_vs_matched_cnn, provenance, runs)

SeedRuns = dict[str, dict[int, str]]


@dataclass(frozen=True)
class SeedStats:
    """A quantity at several points (t_w, epoch or α), per seed and summarised over seeds.

    Attributes:
        x: the points, ascending.
        values: ``(len(x), len(seeds))`` per-seed values; NaN where a seed lacks the point.
        seeds: the seeds, aligned with the columns of ``values``.
        mean, ci_low, ci_high, n: :func:`results.summarize` of each row of ``values`` (CI NaN below 2 seeds).
    """

    x: np.ndarray
    values: np.ndarray
    seeds: tuple[int, ...]
    mean: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n: np.ndarray


def seed_stats(x: Sequence[float], values: np.ndarray, seeds: Sequence[int]) -> SeedStats:
    """:class:`SeedStats` of ``values`` (points x seeds), each row through :func:`results.summarize`."""
    values = np.asarray(values, dtype=float).reshape(len(x), len(seeds))
    rows = [summarize(row) for row in values]
    return SeedStats(x=np.asarray(x), values=values, seeds=tuple(seeds), mean=np.array([s.mean for s in rows]),
                     ci_low=np.array([s.ci_low for s in rows]), ci_high=np.array([s.ci_high for s in rows]),
                     n=np.array([s.n for s in rows], dtype=int))


def _aligned(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Curves (x, y) of several seeds on the union of their x (NaN where a seed lacks a point)."""
    x = np.unique(np.concatenate([c[0] for c in curves])) if curves else np.array([])
    values = np.full((len(x), len(curves)), np.nan)
    for column, (cx, cy) in enumerate(curves):
        values[np.searchsorted(x, cx), column] = cy
    return x, values


# --- relax runs by protocol run and seed ---------------------------------------------------------------


def seed_runs(store: h5py.File) -> SeedRuns:
    """Every run's name by protocol run and seed: ``{"efcn_tw4": {0: "efcn_tw4_s0", 1: "efcn_tw4_s1"}, ...}``."""
    all_runs = runs(store)
    default_seed = int(provenance(store)[1].get("seed", 0))
    grouped: SeedRuns = defaultdict(dict)
    for name, attrs in all_runs.items():
        protocol, seed = run_key(name, attrs, default_seed)
        grouped[protocol][seed] = name
    return {protocol: dict(sorted(by_seed.items())) for protocol, by_seed in grouped.items()}


def protocol_attrs(store: h5py.File, grouped: SeedRuns, protocol: str) -> dict[int, dict[str, Any]]:
    """The attributes of every seed's run of ``protocol``, by seed, or :class:`MissingData`."""
    if protocol not in grouped:
        raise MissingData(f"the run /runs/{protocol} (or its seeds {protocol}_s<seed>)", RELAX)
    return {seed: read_attrs(store["runs"][name]) for seed, name in grouped[protocol].items()}


def switch_protocols(store: h5py.File, grouped: SeedRuns, space: str = "efcn") -> list[tuple[int, str]]:
    """(t_w, protocol run) of the runs embedded straight from the CNN into ``space``, by t_w."""
    found = []
    for protocol, by_seed in grouped.items():
        attrs = read_attrs(store["runs"][next(iter(by_seed.values()))])
        if attrs.get("space") == space and "t_w" in attrs and "tw1" not in attrs:
            found.append((attrs["t_w"], protocol))
    if not found:
        raise MissingData(f"{space} runs switched from the CNN", RELAX)
    return sorted(found)


def initial_train_loss(store: h5py.File, name: str) -> float:
    """The train loss of run ``name`` at its first recorded epoch: just after embedding (Fig. 4, middle)."""
    return float(store["runs"][name]["history"]["train_loss"][0])


def run_metric(store: h5py.File, name: str, metric: str) -> float:
    """Attribute ``metric`` of run ``name`` (NaN when absent), or a derived one.

    Derived metrics: ``"initial_train_loss"`` (the history's first train loss, just after embedding) and
    ``"final_cnn_acc"`` / ``"final_cnn_train_loss"`` (a CNN's row at its ``reference_epoch``, ``--epochs``,
    however long matched controls trained it: :func:`runners._figures.readers.final_cnn_acc`).
    """
    if metric == "initial_train_loss":
        return initial_train_loss(store, name)
    attrs = read_attrs(store["runs"][name])
    if metric == "final_cnn_acc":
        return final_cnn_acc(attrs)
    if metric == "final_cnn_train_loss":
        return float(attrs.get("reference_train_loss", attrs.get("final_train_loss", math.nan)))
    return float(attrs.get(metric, math.nan))


def _all_seeds(grouped: SeedRuns, protocols: Sequence[str]) -> list[int]:
    return sorted({seed for protocol in protocols for seed in grouped[protocol]})


def switch_stats(store: h5py.File, metric: str, space: str = "efcn") -> SeedStats:
    """:func:`run_metric` of every run switched from the CNN into ``space``, over t_w and seeds.

    Args:
        metric: a run attribute (``final_test_acc``, ``final_delta``, ``local_only_acc``, ...) or
            ``"initial_train_loss"`` (the train loss just after embedding).
    """
    grouped = seed_runs(store)
    found = switch_protocols(store, grouped, space)
    seeds = _all_seeds(grouped, [p for _, p in found])
    values = [[run_metric(store, grouped[p][s], metric) if s in grouped[p] else math.nan for s in seeds] for _, p in found]
    return seed_stats([t for t, _ in found], np.array(values), seeds)


def protocol_stats(store: h5py.File, protocol: str, metric: str) -> SeedStats:
    """:func:`run_metric` of one protocol run (``cnn``, ``fcn``) over its seeds, as a single point (x = 0)."""
    grouped = seed_runs(store)
    by_seed = protocol_attrs(store, grouped, protocol)
    return seed_stats([0], np.array([[run_metric(store, grouped[protocol][s], metric) for s in by_seed]]), list(by_seed))


def switch_gain_stats(store: h5py.File, space: str = "efcn", reference: Literal["final", "matched"] = "final") -> SeedStats:
    """Per t_w, the paired gain of relaxing over the same seed's CNN (fraction), summarised over seeds.

    ``reference="final"``: ``gain_vs_final_cnn`` (minus the CNN at ``--epochs``); ``"matched"``:
    ``gain_vs_matched_cnn`` (minus the CNN at t_w + E, as many epochs seen), both as defined in
    :mod:`runners._figures.readers`. The difference is taken per seed, then summarised, which removes the
    seed-to-seed variance the two runs share. A seed without its CNN gives NaN.
    """
    grouped = seed_runs(store)
    cnn = {s: read_attrs(store["runs"][n]) for s, n in grouped.get("cnn", {}).items()}
    if not cnn:
        raise MissingData("the CNN runs /runs/cnn (or cnn_s<seed>)", RELAX)
    histories = {s: read_curve(store["runs"][n]["history"]) for s, n in grouped["cnn"].items()} if reference == "matched" else {}

    def gain(name: str, seed: int) -> float:
        if seed not in cnn:
            return math.nan
        run = read_attrs(store["runs"][name])
        return gain_vs_final_cnn(run, cnn[seed]) if reference == "final" else gain_vs_matched_cnn(run, histories[seed])

    found = switch_protocols(store, grouped, space)
    seeds = _all_seeds(grouped, [p for _, p in found])
    values = [[gain(grouped[p][s], s) if s in grouped[p] else math.nan for s in seeds] for _, p in found]
    return seed_stats([t for t, _ in found], np.array(values), seeds)


def history_stats(store: h5py.File, protocol: str, column: str) -> SeedStats:
    """Column ``column`` of a protocol run's history over epochs and seeds (epochs: the union of the seeds')."""
    grouped = seed_runs(store)
    protocol_attrs(store, grouped, protocol)
    histories = {s: read_curve(store["runs"][n]["history"]) for s, n in grouped[protocol].items()}
    x, values = _aligned([(h["epoch"], h[column]) for h in histories.values()])
    return seed_stats(x, values, list(histories))


def probe_stats(store: h5py.File, protocol: str, measure: str, coordinates: Coordinates = "own") -> SeedStats:
    """A sharpness measure of a protocol run's snapshots along training (not its final row), over epochs and seeds.

    Args:
        protocol: the probed run's ``protocol_run`` attribute (groups without one: their name).
        measure: ``"top_eig"`` (λ₁) or a curve column of :class:`~runners._figures.landscape_readers.Probed` (``trace``, ...).
        coordinates: ``"own"`` or ``"efcn"`` (see :func:`runners._figures.landscape_readers.figure_coordinates`).
    """
    default_seed = int(provenance(store)[1].get("seed", 0))
    found = {int(run.attrs.get("seed", default_seed)): run for name, run in sharpness_runs(store).items()
             if run.attrs.get("protocol_run", name) == protocol}
    if not found:
        raise MissingData(f"/sharpness/{protocol} (or its seeds {protocol}_s<seed>)", SHARPNESS)
    curves = []
    for run in found.values():
        values = run.top_eig(coordinates) if measure == "top_eig" else run.measure(measure, coordinates)
        curves.append((run.curve["epoch"][run.along], values[run.along]))
    x, values = _aligned(curves)
    return seed_stats(x, values, list(found))


# --- the hierarchical grid against a single relaxation ---------------------------------------------------


@dataclass(frozen=True)
class HierarchicalCell:
    """One (tw1, tw2) run of the hierarchical grid against a single-relaxation eFCN, paired by seed.

    Attributes:
        tw1, tw2: CNN epochs before the eLCN, eLCN epochs before the eFCN.
        reference: the protocol run compared with (absent from the file: ``difference.n == 0``).
        difference: :func:`results.paired` of final test accuracies, hierarchical minus reference (fraction).
        per_seed: the per-seed differences, by seed.
    """

    tw1: int
    tw2: int
    reference: str
    difference: Summary
    per_seed: dict[int, float]


def hierarchical_vs_single(store: h5py.File, *, equal_budget: bool = True) -> list[HierarchicalCell]:
    """Each hierarchical CNN -> eLCN(tw1) -> eFCN(tw2) run minus a single CNN -> eFCN relaxation, same seed.

    The hierarchical run trains the CNN tw1 epochs, the eLCN tw2 epochs and the eFCN E epochs (E =
    ``--relax-epochs``): it has seen tw1 + tw2 + E epochs. The single relaxation switched at t_w has seen
    t_w + E epochs, so the **equal-budget reference** (``equal_budget=True``) is ``efcn_tw{tw1 + tw2}``: the
    same total number of epochs and the same E epochs in eFCN space; the two differ only in how the first
    tw1 + tw2 epochs were spent (CNN then eLCN, against CNN alone). This is the comparison behind the claim
    "hierarchical relaxation adds accuracy over a single relaxation with the same epoch budget". With
    ``equal_budget=False`` the reference is ``efcn_tw{tw1}``, switched from the same CNN snapshot: it has
    seen tw2 epochs fewer, so a positive difference there may be the extra epochs alone. When the
    reference was not run (its t_w is not in ``--t-w``), the cell's ``difference`` has ``n == 0``.
    """
    grouped = seed_runs(store)
    cells = []
    for protocol, by_seed in grouped.items():
        attrs = read_attrs(store["runs"][next(iter(by_seed.values()))])
        if "tw1" not in attrs or "tw2" not in attrs:
            continue
        tw1, tw2 = int(attrs["tw1"]), int(attrs["tw2"])
        reference = f"efcn_tw{tw1 + tw2 if equal_budget else tw1}"
        ref_runs = grouped.get(reference, {})
        seeds = [s for s in by_seed if s in ref_runs]
        ours = [run_metric(store, by_seed[s], "final_test_acc") for s in seeds]
        theirs = [run_metric(store, ref_runs[s], "final_test_acc") for s in seeds]
        cells.append(HierarchicalCell(tw1=tw1, tw2=tw2, reference=reference, difference=paired(ours, theirs),
                                      per_seed={s: a - b for s, a, b in zip(seeds, ours, theirs)}))
    if not cells:
        raise MissingData("hierarchical runs efcn_tw1_<a>_tw2_<b>", RELAX + " with --tw1/--tw2")
    return sorted(cells, key=lambda c: (c.tw1, c.tw2))


# --- interpolation paths over seeds --------------------------------------------------------------------


@dataclass(frozen=True)
class PathStats:
    """The interpolation paths of one t_w (or one name) over seeds: per method and column, a :class:`SeedStats` over α.

    Attributes:
        label: ``t_w = <t>`` when the paths record a t_w, else the path name.
        t_w: the paths' t_w, or None.
        names: the ``/interpolation/<name>`` groups summarised, by seed.
        curves: ``curves[method][column]`` (columns ``train_loss``, ``test_acc``).
        references: the horizontal lines of Fig. 6 (see :func:`seed_reference_lines`).
    """

    label: str
    t_w: int | None
    names: dict[int, str]
    curves: dict[str, dict[str, SeedStats]]
    references: list[ReferenceLine]


def seed_reference_lines(store: h5py.File, path: InterpolationPath) -> list[ReferenceLine]:
    """Fig. 6's lines: the final CNN's (at ``--epochs``) and the FCN's train loss and test accuracy, means over
    seeds, when the file holds relax runs; else the path's own endpoints (:func:`runners._figures.landscape_readers.reference_lines`)."""
    grouped = seed_runs(store) if "runs" in store else {}
    if not any(name in grouped for name in ("cnn", "fcn")):
        return reference_lines(store, path)
    lines = []
    for name in ("cnn", "fcn"):
        if name in grouped:
            metrics = ("final_cnn_train_loss", "final_cnn_acc") if name == "cnn" else ("final_train_loss", "final_test_acc")
            loss, acc = (protocol_stats(store, name, metric) for metric in metrics)
            suffix = f" (mean of {acc.n[0]} seeds)" if acc.n[0] > 1 else ""
            lines.append(ReferenceLine(name.upper() + suffix, float(loss.mean[0]), float(acc.mean[0])))
    return lines


def interpolation_stats(store: h5py.File, names: Sequence[str] | None = None) -> list[PathStats]:
    """Every interpolation (or those of ``names``) grouped by its ``t_w`` attribute (else its name) over seeds.

    A path's seed is its ``seed`` attribute, else its position among the paths of its group.
    """
    paths = [p for p in interpolation_paths(store) if names is None or p.name in names]
    if not paths:
        raise MissingData(f"/interpolation/{', '.join(names or [])}", INTERPOLATE)
    groups: dict[Any, list] = defaultdict(list)
    for path in paths:
        groups[path.attrs.get("t_w", path.name)].append(path)
    out = []
    for key, members in groups.items():
        by_seed = {int(p.attrs.get("seed", i)): p for i, p in enumerate(members)}
        seeds = sorted(by_seed)
        curves: dict[str, dict[str, SeedStats]] = {}
        for method in INTERPOLATION_METHODS:
            have = [s for s in seeds if method in by_seed[s].curves]
            if have:
                curves[method] = {}
                for column in ("train_loss", "test_acc"):
                    if not all(column in by_seed[s].curves[method] for s in have):
                        continue
                    x, values = _aligned([(by_seed[s].curves[method]["alpha"], by_seed[s].curves[method][column]) for s in have])
                    curves[method][column] = seed_stats(x, values, have)
        t_w = members[0].attrs.get("t_w")
        out.append(PathStats(label=f"t_w = {t_w}" if t_w is not None else str(key), t_w=t_w,
                             names={s: by_seed[s].name for s in seeds}, curves=curves,
                             references=seed_reference_lines(store, members[0])))
    return out
