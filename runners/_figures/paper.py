"""The paper's Figs. 1-5 and the poster's eLCN / hierarchical panels, drawn from the relax HDF5 file.

Each function takes the open file and returns a matplotlib figure; what it reads comes from
:mod:`runners._figures.readers`, whose :class:`~runners._figures.readers.MissingData` names the command
that produces what is lacking. Quantities over seeds come from :mod:`runners._figures.seed_readers` and are
drawn as the mean with its 95% CI (band or error bars) and the per-seed points; with one seed, as before.
"""

from __future__ import annotations

import h5py
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.colors import ListedColormap

from runners._figures.bands import draw_band, draw_errorbars, n_seeds_note, outside_legend
from runners._figures.readers import WeightPanel, filter_index, weight_panels
from runners._figures.seed_readers import (HierarchicalCell, hierarchical_vs_single, history_stats, protocol_attrs, protocol_stats,
                                           seed_runs, switch_gain_stats, switch_protocols, switch_stats)


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
    cnn = history_stats(store, "cnn", "test_acc")
    fig, ax = plt.subplots(figsize=(10, 5))
    draw_band(ax, cnn, scale=100, fmt="-", seeds=False, color="tab:red", lw=2, label="CNN")
    grouped = seed_runs(store)
    found = switch_protocols(store, grouped)
    relaxed = {t_w: history_stats(store, protocol, "test_acc") for t_w, protocol in found}
    relax_epochs = max(float(np.max(h.x)) for h in relaxed.values())
    for t_w, h in relaxed.items():
        points = ax.scatter(np.full_like(h.x, t_w, dtype=float), 100 * h.mean, c=h.x, cmap=plt.get_cmap("viridis"),
                            vmin=0, vmax=relax_epochs, marker="x", s=25)
        if np.isfinite(h.ci_low[-1]):  # the final epoch's CI: what the gain is judged on
            ax.errorbar([t_w], [100 * h.mean[-1]], yerr=[[100 * (h.mean[-1] - h.ci_low[-1])], [100 * (h.ci_high[-1] - h.mean[-1])]],
                        color="black", capsize=3, lw=1)
    fig.colorbar(points, ax=ax, label="eFCN training epochs after embedding")
    reference_epoch = next(iter(protocol_attrs(store, grouped, "cnn").values())).get("reference_epoch")
    if reference_epoch is not None and reference_epoch < np.max(cnn.x):  # matched controls trained it longer
        ax.axvline(reference_epoch, color="tab:red", ls=":", lw=1, label=f"final CNN (epoch {reference_epoch}); later: matched controls")
    if "fcn" in grouped:
        best = history_stats(store, "fcn", "test_acc")
        ax.axhline(100 * float(np.nanmean(np.nanmax(best.values, axis=0))), color="saddlebrown", ls="--",
                   label="FCN (best, chosen on test; mean over seeds)")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=-0.3, right=max(max(relaxed), float(np.max(cnn.x))) * 1.15 + 1)
    ax.set_xlabel("CNN training epoch  /  relax time t_w")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Fig. 3: generalisation of eFCNs relaxed at t_w (crosses: mean per epoch; bar: final 95% CI; "
                 f"{n_seeds_note(cnn, dots=False)})", fontsize=10)
    outside_legend(ax)
    return fig


def fig4_delta(store: h5py.File) -> plt.Figure:
    delta = switch_stats(store, "final_delta")
    initial_loss = switch_stats(store, "initial_train_loss")
    accuracy = switch_stats(store, "final_test_acc")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    draw_band(axes[0], delta, label="eFCN")
    axes[0].set_xscale("symlog", linthresh=1)
    axes[0].set_xlim(left=-0.3, right=float(np.max(delta.x)) * 1.3 + 1)
    axes[0].set(xlabel="relax time t_w (epochs)", ylabel="final δ", title="t_w vs δ")
    draw_errorbars(axes[1], initial_loss, delta, label="eFCN (t_w annotated)")
    axes[1].set(xlabel="train loss at embedding", ylabel="final δ", title="δ vs initial loss")
    draw_errorbars(axes[2], delta, accuracy, scale_y=100, label="eFCN (t_w annotated)")
    axes[2].set(xlabel="final δ", ylabel="final test accuracy (%)", title="δ vs final accuracy")
    if "fcn" in seed_runs(store):
        fcn_delta = protocol_stats(store, "fcn", "final_delta")
        draw_errorbars(axes[1], protocol_stats(store, "fcn", "initial_train_loss"), fcn_delta, fmt="s", color="tab:brown",
                       label="vanilla FCN")
        draw_errorbars(axes[2], fcn_delta, protocol_stats(store, "fcn", "final_test_acc"), scale_y=100, fmt="s",
                       color="tab:brown", label="vanilla FCN")
    for ax, xs, ys, scale in ((axes[1], initial_loss.mean, delta.mean, 1), (axes[2], delta.mean, accuracy.mean, 100)):
        for x, y, label in zip(xs, scale * ys, delta.x):
            ax.annotate(f"t_w={label}", (x, y), fontsize=7, textcoords="offset points", xytext=(4, 4))
        ax.margins(0.12)  # room for the annotations and the error bars
    outside_legend(axes[2])
    fig.suptitle(f"Fig. 4: how far the eFCNs escape from the CNN subspace (δ = ‖θ_off-local‖ / ‖θ‖); {n_seeds_note(delta)}")
    return fig


# ln of a zero weight is -inf: zeros (every off-local weight right after embedding) are drawn at this floor.
WEIGHT_FLOOR = 1e-6
LOG_WEIGHT_LABEL = f"ln max(|w|, {WEIGHT_FLOOR:g})\n(exact zeros: {np.log(WEIGHT_FLOOR):.1f})"


def log_weights(array: np.ndarray) -> np.ndarray:
    """ln|w| as the paper draws Fig. 5, with |w| floored at :data:`WEIGHT_FLOOR` so that zeros stay finite.

    Example:
        >>> log_weights(np.array([0.0, 1.0])).round(2).tolist()
        [-13.82, 0.0]
    """
    return np.log(np.maximum(np.abs(array), WEIGHT_FLOOR))


def _filter_image(panel: WeightPanel) -> np.ndarray:
    """Input channel 0 at embedding and after training: two rows (1-D inputs) or side by side (2-D inputs)."""
    embedded, trained = log_weights(panel.embedded[0]), log_weights(panel.trained[0])
    if embedded.ndim == 1:
        return np.stack([embedded, trained])
    return np.concatenate([embedded, np.full((embedded.shape[0], 1), np.nan), trained], axis=1)


def _filter_panel(ax: plt.Axes, panel: WeightPanel, vmin: float, vmax: float) -> plt.Axes:
    image = ax.imshow(_filter_image(panel), cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto" if panel.embedded.ndim == 2 else "equal")
    if panel.embedded.ndim == 2:
        ax.set(xlabel="input position", yticks=[0, 1], yticklabels=["at embedding", f"after {panel.epochs} ep."])
    else:
        ax.set(xlabel="at embedding | after training", xticks=[], yticks=[])
    ax.grid(False)
    ax.set_title(f"t_w = {panel.t_w}", fontsize=9)
    return image


def fig5_filters_and_blocks(store: h5py.File) -> plt.Figure:
    panels = list({p.t_w: p for p in reversed(weight_panels(store, "fig5"))}.values())[::-1]  # one seed per t_w
    masked = {label: switch_stats(store, metric) for label, metric in
              (("full eFCN", "final_test_acc"), ("local blocks only", "local_only_acc"), ("off-local blocks only", "offlocal_only_acc"))}
    images = np.concatenate([_filter_image(p).ravel() for p in panels])
    vmin, vmax = float(np.nanmin(images)), float(np.nanmax(images))
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4 * (len(panels) + 1) + 1.5, 3.8))
    for ax, panel in zip(axes, panels):
        image = _filter_panel(ax, panel, vmin, vmax)
    fig.colorbar(image, ax=list(axes[:-1]), label=LOG_WEIGHT_LABEL, shrink=0.9)
    ax = axes[-1]
    for (label, stats), fmt in zip(masked.items(), ("o-", "s-", "^-")):
        draw_band(ax, stats, scale=100, fmt=fmt, label=label)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=-0.3, right=float(np.max(masked["full eFCN"].x)) * 1.3 + 1)
    ax.set(xlabel="relax time t_w", ylabel="test accuracy (%)", title=f"local / off-local contributions ({n_seeds_note(*masked.values())})")
    ax.title.set_fontsize(9)
    outside_legend(ax)
    fig.suptitle("Fig. 5: ln|w| of an eFCN unit's weights over the input (middle unit of the first layer, input channel 0), "
                 "and masked accuracies")
    return fig


def hierarchical_gain(store: h5py.File) -> plt.Figure:
    """The hierarchical grid minus the single relaxation of equal epoch budget (left) and of the same switch (right)."""
    panels = ((True, "equal budget: minus efcn_tw{tw1+tw2}\n(same tw1+tw2+E epochs seen)"),
              (False, "same CNN switch: minus efcn_tw{tw1}\n(tw2 fewer epochs seen)"))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, (equal_budget, title) in zip(axes, panels):
        cells = hierarchical_vs_single(store, equal_budget=equal_budget)
        tw1, tw2 = sorted({c.tw1 for c in cells}), sorted({c.tw2 for c in cells})
        mean = np.full((len(tw1), len(tw2)), np.nan)
        notes = np.full(mean.shape, "", dtype=object)
        for c in cells:
            i, j = tw1.index(c.tw1), tw2.index(c.tw2)
            mean[i, j] = 100 * c.difference.mean
            notes[i, j] = _cell_note(c)
        limit = float(np.nanmax(np.abs(mean))) if np.isfinite(mean).any() else 1.0  # symmetric: white = no difference
        sns.heatmap(mean, annot=notes, fmt="", cmap="RdBu", center=0, vmin=-limit, vmax=limit, xticklabels=tw2, yticklabels=tw1, ax=ax,
                    annot_kws={"fontsize": 8}, cbar_kws={"label": "hierarchical − single eFCN, final test acc. (points)"})
        for c in cells:
            if c.difference.n == 0:  # seaborn leaves NaN cells blank: say why this one is
                ax.text(tw2.index(c.tw2) + 0.5, tw1.index(c.tw1) + 0.5, _cell_note(c), ha="center", va="center", fontsize=8, color="grey")
        ax.set(xlabel="tw2 (eLCN -> eFCN, eLCN epochs)", ylabel="tw1 (CNN -> eLCN, CNN epochs)", title=title)
    fig.suptitle("Hierarchical relaxation CNN -> eLCN(tw1) -> eFCN(tw2) against a single CNN -> eFCN relaxation, paired by seed "
                 "(cell: mean [95% CI], n seeds)")
    return fig


def _cell_note(cell: HierarchicalCell) -> str:
    d = cell.difference
    if d.n == 0:
        return f"no {cell.reference}"
    ci = f"\n[{100 * d.ci_low:+.1f}, {100 * d.ci_high:+.1f}]" if np.isfinite(d.ci_low) else ""
    return f"{100 * d.mean:+.1f}{ci}\nn={d.n}"


def elcn_vs_efcn(store: h5py.File) -> plt.Figure:
    grouped = seed_runs(store)
    sizes = {"cnn": next(iter(protocol_attrs(store, grouped, "cnn").values()))["num_params"]}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for space, marker in (("efcn", "o-"), ("elcn", "s-")):
        gains = switch_gain_stats(store, space)
        line = draw_band(axes[0], gains, scale=100, fmt=marker, label=f"{space}: gain_vs_final_cnn")
        matched = switch_gain_stats(store, space, reference="matched")
        if np.isfinite(matched.mean).any():  # the CNN was trained to t_w + E (relax --matched-controls)
            draw_band(axes[0], matched, scale=100, fmt=marker[0] + "--", color=line.get_color(), mfc="none",
                      label=f"{space}: gain_vs_matched_cnn")
        protocol = switch_protocols(store, grouped, space)[0][1]
        sizes[space] = next(iter(protocol_attrs(store, grouped, protocol).values()))["num_params"]
    axes[0].axhline(0, color="grey", lw=0.8)
    axes[0].set_xscale("symlog", linthresh=1)
    axes[0].set_xlim(left=-0.3, right=float(np.max(gains.x)) * 1.3 + 1)
    axes[0].set(xlabel="relax time t_w", ylabel="gain over the same seed's CNN (points)", title=f"paired test accuracy gain\n({n_seeds_note(gains)})")
    outside_legend(axes[0])
    names = ["cnn", "elcn", "efcn"]
    axes[1].bar(names, [sizes[n] for n in names], color=["tab:red", "tab:orange", "tab:blue"])
    axes[1].set_yscale("log")
    axes[1].set_ylim(top=max(sizes.values()) * 4)  # room for the labels above the bars
    axes[1].set(ylabel="parameters", title="memory: parameters of each space")
    for i, n in enumerate(names):
        axes[1].annotate(f"{sizes[n] / 1e6:.2f}M", (i, sizes[n]), ha="center", va="bottom")
    fig.suptitle("eLCN vs eFCN: test accuracy gain over the CNN and parameter count")
    return fig
