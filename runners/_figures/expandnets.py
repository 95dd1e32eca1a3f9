"""ExpandNets figures (Guo et al. 2020, Figs. 2-4): training curves, gradient confusion, loss surfaces."""

from __future__ import annotations

import h5py
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from runners._figures.readers import EXPANDNETS, MissingData, expandnets_runs, seed_mean


def expandnets_training(store: h5py.File) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for label, seeds in expandnets_runs(store).items():
        for ax, column in zip(axes, ("train_acc", "test_acc")):
            epoch, mean, std = seed_mean(seeds, column)
            line, = ax.plot(epoch, 100 * (1 - mean), label=f"{label} ({len(seeds)} seeds)")
            ax.fill_between(epoch, 100 * (1 - mean - std), 100 * (1 - mean + std), color=line.get_color(), alpha=0.15)
    for ax, split in zip(axes, ("train", "test")):
        ax.set(xlabel="epoch", ylabel=f"{split} error (%)", yscale="log", title=f"{split} error (mean ± std over seeds)")
    axes[1].legend(fontsize=8)
    fig.suptitle("ExpandNets: compact SmallNet vs its linear expansions (expanded nets evaluated as trained)")
    return fig


def expandnets_gradient_confusion(store: h5py.File) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for label, seeds in expandnets_runs(store).items():
        epoch, mean, _ = seed_mean(seeds, "min_cosine")
        axes[0].plot(epoch, mean, label=label)
        cosines = np.concatenate([run.final_cosines for run in seeds if run.final_cosines is not None] or [np.array([])])
        if len(cosines) > 1:
            sns.kdeplot(cosines, ax=axes[1], label=label)
    axes[0].set(xlabel="epoch", ylabel="minimum pairwise cosine", title="min gradient cosine similarity per epoch")
    axes[1].set(xlabel="pairwise cosine of mini-batch gradients", ylabel="density", title="at the end of training (all seeds)")
    axes[0].legend(fontsize=8)
    fig.suptitle("ExpandNets: gradient confusion, minimum and distribution of pairwise cosines of mini-batch gradients")
    return fig


def expandnets_surfaces(store: h5py.File) -> plt.Figure:
    curves = {label: seeds[0].surface_1d for label, seeds in expandnets_runs(store).items() if seeds[0].surface_1d is not None}
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
