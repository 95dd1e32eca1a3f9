"""Landscape figures: the paper's Fig. 6 (interpolation paths, also ``runners.interpolate --plot``) and the poster's curvature panels."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np

from runners._figures.bands import draw_band, draw_errorbars, n_seeds_note, outside_legend
from runners._figures.landscape_readers import figure_coordinates, gain_vs_sharpness, sharpness_runs
from runners._figures.readers import SHARPNESS, MissingData, open_results
from runners._figures.seed_readers import interpolation_stats, probe_stats, seed_stats, switch_gain_stats
from runners._figures.style import save_figure, set_style

METHOD_STYLE = {"linear": ("tab:orange", "linear"), "string": ("tab:blue", "string"), "output": ("tab:green", "output average")}
RELAX_GAIN_LABEL = "relax gain (eFCN − final CNN)"


def fig6_interpolation(store: h5py.File, names: list[str] | None = None) -> plt.Figure:
    """Train loss and test accuracy against α, one row per t_w (or per path name when it records none).

    Paths of the same t_w from several seeds (``/interpolation/<name>`` with attributes ``t_w`` and ``seed``)
    are one row: the mean curve with its 95% CI band and each seed's curve faint; one seed draws as before.
    """
    groups = interpolation_stats(store, names)
    fig, axes = plt.subplots(len(groups), 2, figsize=(12, 3.2 * len(groups)), squeeze=False)
    for row, group in enumerate(groups):
        for method, (colour, label) in METHOD_STYLE.items():
            for column, ax, scale in (("train_loss", axes[row, 0], 1), ("test_acc", axes[row, 1], 100)):
                stats = group.curves.get(method, {}).get(column)
                if stats is None:
                    continue
                draw_band(ax, stats, scale=scale, fmt="-", seeds=False, color=colour, label=label)
                if len(stats.seeds) > 1:
                    ax.plot(stats.x, scale * stats.values, color=colour, lw=0.6, alpha=0.35)
        for line, style in zip(group.references, ("--", ":")):
            axes[row, 0].axhline(line.train_loss, color="grey", ls=style, label=line.label)
            axes[row, 1].axhline(100 * line.test_acc, color="grey", ls=style, label=line.label)
        seeds = max((len(s.seeds) for m in group.curves.values() for s in m.values()), default=1)
        note = f" ({seeds} seeds, mean ± 95% CI)" if seeds > 1 else ""
        axes[row, 0].set(xlabel="α (0: CNN, 1: eFCN)", ylabel="train loss", title=f"{group.label}: train loss{note}")
        axes[row, 1].set(xlabel="α (0: CNN, 1: eFCN)", ylabel="test accuracy (%)", title=f"{group.label}: test accuracy{note}")
        outside_legend(axes[row, 1])
    fig.suptitle("Fig. 6: interpolating between the CNN and the eFCN it stemmed from")
    return fig


def plot_paths(results: str | os.PathLike, name: str) -> list[Path]:
    """``runners.interpolate --plot``: Fig. 6 for ``/interpolation/<name>`` only, as ``<results stem>_<name>.png|pdf``.

    With no relax runs in the file, the endpoints' values are the reference lines, labelled by their
    spaces (CNN at α = 0, eFCN at 1).

    Returns:
        The two files written.
    """
    set_style()
    with open_results(results) as store:
        figure = fig6_interpolation(store, names=[name])
    return save_figure(figure, f"{Path(results).with_suffix('')}_{name}")


def sharpness_vs_gain(store: h5py.File) -> plt.Figure:
    """λ₁ and trace along the CNN's training, and the paired gain of relaxing at t_w next to λ₁ there (mean ± 95% CI over seeds)."""
    coordinates = figure_coordinates(sharpness_runs(store))
    top = probe_stats(store, "cnn", "top_eig", coordinates)
    trace = probe_stats(store, "cnn", "trace", coordinates)
    where = "eFCN coordinates, CNN embedded" if coordinates == "efcn" else "the CNN's own coordinates"
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    draw_band(axes[0], top, color="tab:red", label="top eigenvalue λ₁")
    axes[0].set(xlabel="CNN training epoch", ylabel="λ₁ of the train-loss Hessian", title=f"sharpness along CNN training ({where})")
    twin = axes[0].twinx()
    draw_band(twin, trace, fmt="s--", color="tab:purple", label="trace")
    twin.set_ylabel("Hessian trace")
    twin.grid(False)
    _legend_below(axes[0], twin)
    try:
        gains = switch_gain_stats(store)
    except MissingData:
        raise MissingData("eFCN runs and the CNN in /runs to compute the relax gain", "python -m runners.relax") from None
    draw_band(axes[1], gains, scale=100, color="tab:blue", label=RELAX_GAIN_LABEL)
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[1].set(xlabel="relax time t_w", ylabel="test accuracy gain (points)",
                title=f"gain of relaxing at t_w vs sharpness there ({n_seeds_note(gains, dots=False)})")
    sharp_at = dict(zip(top.x.astype(int), top.mean))
    shared = [t for t in gains.x if t in sharp_at]
    right = axes[1].twinx()
    if shared:
        right.plot(shared, [sharp_at[t] for t in shared], "^:", color="tab:red", label="λ₁ at t_w (mean)")
        right.set_ylabel("λ₁ of the CNN at t_w")
    right.grid(False)
    _legend_below(axes[1], right)
    fig.suptitle("Sharpness along CNN training and the gain of relaxing at t_w (poster: largest where it is sharpest)")
    return fig


def _legend_below(ax: plt.Axes, twin: plt.Axes) -> None:
    """One legend for an axes and its twin, below the axes, so that it covers neither's data."""
    handles, labels = (sum(pair, []) for pair in zip(ax.get_legend_handles_labels(), twin.get_legend_handles_labels()))
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=len(handles), fontsize=8, frameon=False)


def basin_widths(store: h5py.File) -> plt.Figure:
    """Basin width and λ₁ of every run's final model, in the eFCN's coordinates when the file has them.

    A width whose search hit its cap on some ray is not a width: it is drawn as a hatched bar at its lower
    bound, marked "≥", never as a plain bar.
    """
    probed = sharpness_runs(store)
    coordinates = figure_coordinates(probed)
    bars = []
    for name, run in probed.items():
        final = np.flatnonzero(run.curve["final"] == 1)
        if len(final):
            row, basin = final[-1], run.basin(coordinates)
            bars.append((run.attrs.get("protocol_run", name), run.attrs.get("seed", 0), name, basin.width[row], basin.std[row],
                         basin.lower_bound[row], run.top_eig(coordinates)[row]))
    if not bars:
        raise MissingData("final checkpoints in /sharpness", SHARPNESS)
    order = {"cnn": 0, "fcn": 2}
    # one bar per run, several seeds side by side, coloured and ordered by protocol run (t_w) and then seed
    bars.sort(key=lambda b: (order.get(b[0], 1), int("".join(filter(str.isdigit, b[0])) or 0), b[0], b[1]))
    protocols, _, names, width, spread, bound, top = (np.array(column) for column in zip(*bars))
    colours = ["tab:red" if p == "cnn" else "saddlebrown" if p == "fcn" else "tab:blue" for p in protocols]
    censored = np.isnan(width) & np.isfinite(bound)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    axes[0].bar(names, np.nan_to_num(width), yerr=np.nan_to_num(spread), color=colours, capsize=3)
    if censored.any():
        axes[0].bar(names[censored], bound[censored], color="none", edgecolor="grey", hatch="//",
                    label="search hit its cap: width ≥ bar (lower bound)")
        for x in np.flatnonzero(censored):
            axes[0].annotate(f"≥{bound[x]:.2g}", (x, bound[x]), ha="center", va="bottom", fontsize=8)
        axes[0].margins(y=0.1)  # room for the "≥" marks above the tallest bar
        outside_legend(axes[0])
    where = "eFCN coordinates, CNN embedded" if coordinates == "efcn" else "each model's own coordinates"
    axes[0].set(ylabel="basin width (filter-normalised distance)", title=f"basin width at the end of training\n({where})")
    axes[1].bar(names, top, color=colours)
    axes[1].set(ylabel="λ₁", yscale="log", title=f"top Hessian eigenvalue at the end of training\n({where})")
    for ax in axes:
        ax.tick_params(axis="x", rotation=45)
    fig.suptitle("Poster: do eFCNs reach wider basins than the CNN and the vanilla FCN?")
    return fig


def gain_against_sharpness(store: h5py.File) -> plt.Figure:
    """The poster's "gain is highest where the landscape is sharpest" as gain against the CNN's λ₁ at t_w.

    Every (seed, t_w) is a faint point; each t_w's mean carries 95% CI bars on both axes
    (:func:`results.summarize` over seeds); the title gives Spearman's ρ over every point with its
    bootstrap 95% CI (:func:`results.rank_correlation`). λ₁ is in the eFCN's coordinates when the file has
    them (the CNN embedded: comparable with the eFCNs), else in the CNN's own; the axis says which.
    """
    points = gain_vs_sharpness(store, coordinates=figure_coordinates(sharpness_runs(store)))
    if not np.isfinite(points.top_eig).any():
        raise MissingData("the CNN's snapshots at the switch times t_w in /sharpness", SHARPNESS)
    t_ws, seeds = np.unique(points.t_w), np.unique(points.seed)
    grid = {name: np.full((len(t_ws), len(seeds)), np.nan) for name in ("top_eig", "gain")}
    for t_w, seed, top, gain in zip(points.t_w, points.seed, points.top_eig, points.gain):
        at = (np.searchsorted(t_ws, t_w), np.searchsorted(seeds, seed))
        grid["top_eig"][at], grid["gain"][at] = top, gain
    sharp, gain = (seed_stats(t_ws, grid[name], seeds) for name in ("top_eig", "gain"))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(t_ws)))
    for i, (t_w, colour) in enumerate(zip(t_ws, colours)):
        ax.plot(sharp.values[i], 100 * gain.values[i], ".", color=colour, alpha=0.45, ms=7)
        one = (seed_stats([t_w], sharp.values[i:i + 1], seeds), seed_stats([t_w], gain.values[i:i + 1], seeds))
        draw_errorbars(ax, one[0], one[1], scale_y=100, seeds=False, fmt="o", color=colour, ms=8, label=f"t_w = {t_w:g}")
    ax.axhline(0, color="grey", lw=0.8)
    finite = points.top_eig[np.isfinite(points.top_eig)]
    if finite.size and finite.min() > 0 and finite.max() > 10 * finite.min():
        ax.set_xscale("log")  # λ₁ spans decades along training; ρ is on ranks, unchanged by the scale
    where = "eFCN coordinates, CNN embedded" if points.coordinates == "efcn" else "the CNN's own coordinates"
    r = points.correlation
    ci = f"[{r.ci_low:.2f}, {r.ci_high:.2f}]" if np.isfinite(r.ci_low) else "(no CI)"
    ax.set(xlabel=f"λ₁ of the CNN at t_w ({where})", ylabel="gain_vs_final_cnn (points)",
           title=f"Spearman ρ = {r.rho:.2f}, 95% CI {ci}, over {r.n} (seed, t_w) points\n"
                 f"per t_w: {n_seeds_note(gain)}")
    outside_legend(ax)
    fig.suptitle("Poster: is the gain of relaxing highest where the CNN is sharpest?")
    return fig
