"""The paper's Figs. 1-5 and the poster's eLCN / hierarchical panels, drawn from the relax HDF5 file.

Each function takes the open file and returns a matplotlib figure; what it reads comes from
:mod:`runners._figures.readers`, whose :class:`~runners._figures.readers.MissingData` names the command
that produces what is lacking.
"""

from __future__ import annotations

import math

import h5py
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.colors import ListedColormap

from runners._figures.readers import (RELAX, MissingData, WeightPanel, best_test_acc, filter_index, hierarchical_runs,
                                      history, loss_at_embedding, relax_gain, relax_gains, require_run, runs, switch_runs,
                                      weight_panels)


def fig1_efcn_matrix(store: h5py.File) -> plt.Figure:
    index = filter_index(store)
    taps = int(index.max()) + 1
    colours = ListedColormap(["#f3e36b"] + sns.color_palette("tab10", taps).as_hex())
    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.imshow(index + 1, cmap=colours, vmin=0, vmax=taps, aspect="equal")
    for (row, col), value in np.ndenumerate(index):
        ax.text(col, row, "·" if value < 0 else f"w{value}", ha="center", va="center", fontsize=7)
    ax.set_xlabel("input unit (flattened 4x4 image)")
    ax.set_ylabel("output unit")
    ax.set_title("Fig. 1: eFCN matrix of a 3x3 filter on a 4x4 input (colour = filter entry; yellow = off-local)")
    ax.set_xticks(range(index.shape[1]))
    ax.set_yticks(range(index.shape[0]))
    ax.grid(False)
    return fig


def _log_abs(array: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(np.abs(array))


def fig2_weight_heatmaps(store: h5py.File) -> plt.Figure:
    panel = weight_panels(store, "fig2")[0]  # the earliest t_w: the most structure left to relax
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    finite = np.concatenate([_log_abs(panel.embedded).ravel(), _log_abs(panel.trained).ravel()])
    finite = finite[np.isfinite(finite)]
    vmin, vmax = np.percentile(finite, 1), finite.max()
    for ax, weights, title in zip(axes, (panel.embedded, panel.trained), ("just after embedding", "after training")):
        image = ax.imshow(_log_abs(weights), cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_title(title)
        ax.grid(False)
        ax.set_xlabel("input position")
        ax.set_ylabel("output position")
    fig.colorbar(image, ax=axes, label="ln |w|  (white: exactly 0)")
    fig.suptitle(f"Fig. 2: first eFCN layer, block (in channel 0, out channel 0), t_w = {panel.t_w}")
    return fig


def fig3_dynamics(store: h5py.File) -> plt.Figure:
    all_runs = runs(store)
    require_run(all_runs, "cnn")
    cnn = history(store, "cnn")
    fig, ax = plt.subplots(figsize=(9, 5))
    ax.plot(cnn["epoch"], 100 * cnn["test_acc"], color="tab:red", lw=2, label="CNN")
    found = switch_runs(store)
    relax_epochs = max(all_runs[n]["epochs"] for _, n in found)
    for t_w, name in found:
        h = history(store, name)
        points = ax.scatter(np.full_like(h["epoch"], t_w), 100 * h["test_acc"], c=h["epoch"], cmap=plt.get_cmap("viridis"),
                            vmin=0, vmax=relax_epochs, marker="x", s=25)
    fig.colorbar(points, ax=ax, label="eFCN training epochs after embedding")
    if "fcn" in all_runs:
        ax.axhline(100 * best_test_acc(store, "fcn"), color="saddlebrown", ls="--", label="FCN (best)")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=-0.3)
    ax.set_xlabel("CNN training epoch  /  relax time t_w")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Fig. 3: generalisation of eFCNs relaxed at t_w")
    ax.legend(loc="lower right")
    return fig


def fig4_delta(store: h5py.File) -> plt.Figure:
    all_runs = runs(store)
    points = [(t, all_runs[n]["final_delta"], loss_at_embedding(store, n), all_runs[n]["final_test_acc"])
              for t, n in switch_runs(store)]
    t_w, delta, initial_loss, accuracy = map(np.asarray, zip(*points))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    axes[0].plot(t_w, delta, "o-")
    axes[0].set_xscale("symlog", linthresh=1)
    axes[0].set(xlabel="relax time t_w (epochs)", ylabel="final δ", title="t_w vs δ")
    axes[1].plot(initial_loss, delta, "o")
    axes[1].set(xlabel="train loss at embedding", ylabel="final δ", title="δ vs initial loss")
    axes[2].plot(delta, 100 * accuracy, "o")
    axes[2].set(xlabel="final δ", ylabel="final test accuracy (%)", title="δ vs final accuracy")
    if "fcn" in all_runs:
        fcn = all_runs["fcn"]
        axes[1].plot(loss_at_embedding(store, "fcn"), fcn["final_delta"], "s", color="tab:blue", label="vanilla FCN")
        axes[2].plot(fcn["final_delta"], 100 * fcn["final_test_acc"], "s", color="tab:blue", label="vanilla FCN")
        axes[2].legend()
    for ax in (axes[1], axes[2]):
        for x, y, label in zip(*(ax.lines[0].get_data()), t_w):
            ax.annotate(f"t_w={label}", (x, y), fontsize=7, textcoords="offset points", xytext=(3, 3))
    fig.suptitle("Fig. 4: how far the eFCNs escape from the CNN subspace (δ = ‖θ_off-local‖ / ‖θ‖)")
    return fig


def _filter_panel(ax: plt.Axes, panel: WeightPanel) -> None:
    embedded, trained = panel.embedded, panel.trained
    if embedded.ndim == 2:  # 1-D inputs (C, L): the weights along the sequence, channel 0
        ax.plot(embedded[0], color="tab:red", lw=2, label="at embedding")
        ax.plot(trained[0], color="tab:blue", label=f"after {panel.epochs} epochs")
        ax.set(xlabel="input position", ylabel="weight")
        ax.legend(fontsize=7)
    else:  # 2-D inputs (C, H, W): ln|w| of input channel 0, side by side
        both = np.concatenate([_log_abs(embedded[0]), np.full((embedded.shape[1], 1), np.nan), _log_abs(trained[0])], axis=1)
        ax.imshow(both, cmap="viridis")
        ax.set(xlabel="at embedding | after training", xticks=[], yticks=[])
        ax.grid(False)
    ax.set_title(f"t_w = {panel.t_w}", fontsize=9)


def fig5_filters_and_blocks(store: h5py.File) -> plt.Figure:
    panels = weight_panels(store, "fig5")
    all_runs = runs(store)
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4 * (len(panels) + 1), 3.8))
    for ax, panel in zip(axes, panels):
        _filter_panel(ax, panel)
    ax = axes[-1]
    t_w, local, offlocal, full = zip(*[(t, all_runs[n].get("local_only_acc", math.nan), all_runs[n].get("offlocal_only_acc", math.nan),
                                       all_runs[n]["final_test_acc"]) for t, n in switch_runs(store)])
    ax.plot(t_w, 100 * np.asarray(full), "o-", label="full eFCN")
    ax.plot(t_w, 100 * np.asarray(local), "s-", label="local blocks only")
    ax.plot(t_w, 100 * np.asarray(offlocal), "^-", label="off-local blocks only")
    ax.set_xscale("symlog", linthresh=1)
    ax.set(xlabel="relax time t_w", ylabel="test accuracy (%)", title="local / off-local contributions")
    ax.legend(fontsize=8)
    fig.suptitle("Fig. 5: an eFCN unit's weights over the input (middle unit of the first layer), and masked accuracies")
    return fig


def hierarchical_gain(store: h5py.File) -> plt.Figure:
    all_runs = runs(store)
    cnn = require_run(all_runs, "cnn")
    cells = [(a["tw1"], a["tw2"], relax_gain(a, cnn)) for a in hierarchical_runs(all_runs)]
    if not cells:
        raise MissingData("hierarchical runs efcn_tw1_<a>_tw2_<b>", RELAX + " with --tw1/--tw2")
    tw1, tw2 = sorted({c[0] for c in cells}), sorted({c[1] for c in cells})
    gain = np.full((len(tw1), len(tw2)), np.nan)
    for a, b, g in cells:
        gain[tw1.index(a), tw2.index(b)] = 100 * g
    fig, ax = plt.subplots(figsize=(6, 4.5))
    sns.heatmap(gain, annot=True, fmt=".1f", cmap="RdBu", center=0, xticklabels=tw2, yticklabels=tw1, ax=ax,
                cbar_kws={"label": "test accuracy gain over the CNN (points)"})
    ax.set(xlabel="tw2 (eLCN -> eFCN, eLCN epochs)", ylabel="tw1 (CNN -> eLCN, CNN epochs)",
           title="Hierarchical relaxation CNN -> eLCN(tw1) -> eFCN(tw2)")
    return fig


def elcn_vs_efcn(store: h5py.File) -> plt.Figure:
    all_runs = runs(store)
    sizes = {"cnn": require_run(all_runs, "cnn")["num_params"]}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for space, marker in (("efcn", "o"), ("elcn", "s")):
        gains = relax_gains(store, space)
        axes[0].plot(gains.t_w, 100 * gains.gain, marker + "-", label=space)
        sizes[space] = all_runs[gains.runs[0]]["num_params"]
    axes[0].axhline(0, color="grey", lw=0.8)
    axes[0].set_xscale("symlog", linthresh=1)
    axes[0].set(xlabel="relax time t_w", ylabel="gain over the CNN (points)", title="test accuracy gain")
    axes[0].legend()
    names = ["cnn", "elcn", "efcn"]
    axes[1].bar(names, [sizes[n] for n in names], color=["tab:red", "tab:orange", "tab:blue"])
    axes[1].set_yscale("log")
    axes[1].set(ylabel="parameters", title="memory: parameters of each space")
    for i, n in enumerate(names):
        axes[1].annotate(f"{sizes[n] / 1e6:.2f}M", (i, sizes[n]), ha="center", va="bottom")
    fig.suptitle("eLCN vs eFCN: test accuracy gain over the CNN and parameter count")
    return fig
