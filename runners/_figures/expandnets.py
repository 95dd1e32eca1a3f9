"""ExpandNets figures (Guo et al. 2020, Figs. 2-4): training curves, gradient confusion, loss surfaces."""

from __future__ import annotations

from collections.abc import Callable

import h5py
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from runners._figures.bands import draw_band, outside_legend
from runners._figures.readers import EXPANDNETS, ExpandRun, MissingData, expandnets_runs
from runners._figures.seed_readers import SeedStats, seed_stats


def expandnets_training(store: h5py.File, group: str | None = None) -> plt.Figure:
    """Train and test error per epoch; runs under ``group`` (see :func:`expandnets_runs`)."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    for label, seeds in expandnets_runs(store, group).items():
        for ax, column in zip(axes, ("train_acc", "test_acc")):
            error = _seed_curve(seeds, column, lambda acc: 100 * (1 - acc))
            draw_band(ax, error, fmt="-", seeds=False, label=f"{label} ({len(seeds)} seeds)")
    for ax, split in zip(axes, ("train", "test")):
        ax.set(xlabel="epoch", ylabel=f"{split} error (%)", title=f"{split} error (mean, 95% CI band over seeds)")
        lowest = min((np.nanmin(line.get_ydata()) for line in ax.get_lines()), default=1.0)
        # the paper's log axis, unless an error of 0% would fall off it (symlog keeps it, linear below 1%)
        ax.set_yscale("log") if lowest > 0 else ax.set_yscale("symlog", linthresh=1)
    outside_legend(axes[1])
    fig.suptitle("ExpandNets: compact SmallNet vs its linear expansions (expanded nets evaluated as trained)")
    return fig


def _seed_curve(seeds: list[ExpandRun], column: str, transform: Callable[[np.ndarray], np.ndarray] = np.asarray) -> SeedStats:
    """A history column over epochs and seeds (each epoch through :func:`results.summarize`)."""
    length = min(len(run.history["epoch"]) for run in seeds)
    values = np.stack([transform(run.history[column][:length]) for run in seeds], axis=1)
    return seed_stats(seeds[0].history["epoch"][:length], values, list(range(len(seeds))))


def expandnets_gradient_confusion(store: h5py.File, group: str | None = None) -> plt.Figure:
    """Minimum gradient cosine per epoch and the final cosines with their KDE; runs under ``group`` (see :func:`expandnets_runs`)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for label, seeds in expandnets_runs(store, group).items():
        draw_band(axes[0], _seed_curve(seeds, "min_cosine"), fmt="-", seeds=False, label=label)
        cosines = np.concatenate([run.final_cosines for run in seeds if run.final_cosines is not None] or [np.array([])])
        if len(cosines) > 1:
            sns.kdeplot(cosines, ax=axes[1], label=label)
    axes[0].set(xlabel="epoch", ylabel="minimum pairwise cosine", title="min gradient cosine similarity per epoch")
    axes[1].set(xlabel="pairwise cosine of mini-batch gradients", ylabel="density", title="at the end of training (all seeds)")
    outside_legend(axes[1] if axes[1].get_legend_handles_labels()[0] else axes[0])
    fig.suptitle("ExpandNets: gradient confusion, minimum and distribution of pairwise cosines of mini-batch gradients")
    return fig


def expandnets_surfaces(store: h5py.File, group: str | None = None) -> plt.Figure:
    """1-D loss and error surfaces of each expansion's first seed; runs under ``group`` (see :func:`expandnets_runs`)."""
    curves = {label: seeds[0].surface_1d for label, seeds in expandnets_runs(store, group).items() if seeds[0].surface_1d is not None}
    if not curves:
        raise MissingData("1-D loss surfaces of the compressed nets", EXPANDNETS + " --probe-points 21")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for label, curve in curves.items():
        axes[0].plot(curve["alpha"], curve["train_loss"], label=label)
        axes[1].plot(curve["alpha"], 100 * (1 - curve["train_acc"]), label=label)
    axes[0].set(xlabel="distance along a filter-normalised direction", ylabel="train loss", title="1-D loss surface")
    axes[1].set(xlabel="distance along a filter-normalised direction", ylabel="train error (%)", title="1-D error surface")
    outside_legend(axes[1])
    fig.suptitle("ExpandNets: landscapes of the compact net and of the compressed expanded nets (first seed)")
    return fig
