"""ExpandNets figures (Guo et al. 2020, Figs. 2-4): training curves, gradient confusion, loss surfaces."""

from __future__ import annotations

from collections import defaultdict

import h5py
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from results import read_attrs, read_curve
from runners._figures_paper import MissingData

EXPANDNETS = "python -m runners.expandnets --out DIR"
MODE_ORDER = ("compact", "fc", "cl", "ck", "cl+fc", "ck+fc")


def _by_mode(store: h5py.File) -> dict[str, list[h5py.Group]]:
    """The ExpandNets runs grouped by expansion (``mode`` + ``_productl2`` when that penalty was used)."""
    groups: dict[str, list[h5py.Group]] = defaultdict(list)
    for group in store.get("runs", {}).values():
        attrs = read_attrs(group)
        if "mode" in attrs and attrs.get("status") == "done":
            label = attrs["mode"] + (" (product L2)" if attrs.get("l2") == "product" else "")
            groups[label].append(group)
    if not groups:
        raise MissingData("ExpandNets runs (/runs/<mode>_seed<k>)", EXPANDNETS)
    return dict(sorted(groups.items(), key=lambda item: (MODE_ORDER.index(item[0].split()[0]) if item[0].split()[0] in MODE_ORDER
                                                         else len(MODE_ORDER), item[0])))


def _mean_curve(groups: list[h5py.Group], column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    curves = [read_curve(g["history"]) for g in groups]
    length = min(len(c["epoch"]) for c in curves)
    values = np.stack([c[column][:length] for c in curves])
    return curves[0]["epoch"][:length], np.nanmean(values, 0), np.nanstd(values, 0)


def expandnets_training(store: h5py.File) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for label, groups in _by_mode(store).items():
        for ax, column in zip(axes, ("train_acc", "test_acc")):
            epoch, mean, std = _mean_curve(groups, column)
            line, = ax.plot(epoch, 100 * (1 - mean), label=f"{label} ({len(groups)} seeds)")
            ax.fill_between(epoch, 100 * (1 - mean - std), 100 * (1 - mean + std), color=line.get_color(), alpha=0.15)
    for ax, split in zip(axes, ("train", "test")):
        ax.set(xlabel="epoch", ylabel=f"{split} error (%)", yscale="log", title=f"{split} error (mean ± std over seeds)")
    axes[1].legend(fontsize=8)
    fig.suptitle("ExpandNets: compact SmallNet vs its linear expansions (expanded nets evaluated as trained)")
    return fig


def expandnets_gradient_confusion(store: h5py.File) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for label, groups in _by_mode(store).items():
        epoch, mean, _ = _mean_curve(groups, "min_cosine")
        axes[0].plot(epoch, mean, label=label)
        cosines = np.concatenate([g["final_cosines"]["cosine"][()] for g in groups if "final_cosines" in g])
        if len(cosines) > 1:
            sns.kdeplot(cosines, ax=axes[1], label=label)
    axes[0].set(xlabel="epoch", ylabel="minimum pairwise cosine", title="min gradient cosine similarity per epoch")
    axes[1].set(xlabel="pairwise cosine of mini-batch gradients", ylabel="density", title="at the end of training (all seeds)")
    axes[0].legend(fontsize=8)
    fig.suptitle("ExpandNets: gradient confusion, minimum and distribution of pairwise cosines of mini-batch gradients")
    return fig


def expandnets_surfaces(store: h5py.File) -> plt.Figure:
    curves = {label: read_curve(groups[0]["surface_1d"]) for label, groups in _by_mode(store).items() if "surface_1d" in groups[0]}
    if not curves:
        raise MissingData("1-D loss surfaces of the compressed nets", EXPANDNETS + " --probe-points 21")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for label, curve in curves.items():
        axes[0].plot(curve["alpha"], curve["train_loss"], label=label)
        axes[1].plot(curve["alpha"], 100 * (1 - curve["train_acc"]), label=label)
    axes[0].set(xlabel="distance along a filter-normalised direction", ylabel="train loss", title="1-D loss surface")
    axes[1].set(xlabel="distance along a filter-normalised direction", ylabel="train error (%)", title="1-D error surface")
    axes[0].legend(fontsize=8)
    fig.suptitle("ExpandNets: landscapes of the compact net and of the compressed expanded nets (first seed)")
    return fig

