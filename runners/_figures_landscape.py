"""Landscape figures: the paper's Fig. 6 (interpolation paths) and the poster's curvature panels."""

from __future__ import annotations

import h5py
import matplotlib.pyplot as plt
import numpy as np

from results import read_attrs, read_curve
from runners._figures_paper import MissingData, runs

INTERPOLATE = "python -m runners.interpolate --ckpt-a CNN.pt --ckpt-b EFCN.pt --out R.h5 (or runners.reproduce)"
METHOD_STYLE = {"linear": ("tab:orange", "linear"), "string": ("tab:blue", "string"), "output": ("tab:green", "output average")}


def interpolation_groups(store: h5py.File) -> list[tuple[str, h5py.Group]]:
    """(name, group) of every interpolation in the file, ordered by t_w when the group records one."""
    if "interpolation" not in store or not len(store["interpolation"]):
        raise MissingData("/interpolation", INTERPOLATE)
    groups = list(store["interpolation"].items())
    return sorted(groups, key=lambda item: (read_attrs(item[1]).get("t_w", float("inf")), item[0]))


def _reference_lines(store: h5py.File, group: h5py.Group) -> list[tuple[str, float, float]]:
    """(label, train loss, test accuracy) lines: the CNN and FCN of a relax file, else the path's endpoints."""
    if "runs" in store:
        all_runs = runs(store)
        return [(name.upper(), all_runs[name]["final_train_loss"], all_runs[name]["final_test_acc"])
                for name in ("cnn", "fcn") if name in all_runs]
    attrs = next((read_attrs(group[m]) for m in METHOD_STYLE if m in group), {})
    return [(f"{attrs[f'space_{side}'].upper()} (α={alpha})", attrs[f"train_{side}_loss"], attrs[f"test_{side}_acc"])
            for side, alpha in (("a", 0), ("b", 1)) if f"space_{side}" in attrs]


def fig6_interpolation(store: h5py.File, names: list[str] | None = None) -> plt.Figure:
    """Train loss and test accuracy against α, one row per path (all of them, or ``names``)."""
    groups = [(n, g) for n, g in interpolation_groups(store) if names is None or n in names]
    if not groups:
        raise MissingData(f"/interpolation/{', '.join(names or [])}", INTERPOLATE)
    fig, axes = plt.subplots(len(groups), 2, figsize=(11, 3.2 * len(groups)), squeeze=False)
    for row, (name, group) in enumerate(groups):
        attrs = read_attrs(group)
        for method, (colour, label) in METHOD_STYLE.items():
            if method not in group:
                continue
            curve = read_curve(group[method])
            axes[row, 0].plot(curve["alpha"], curve["train_loss"], color=colour, label=label)
            axes[row, 1].plot(curve["alpha"], 100 * curve["test_acc"], color=colour, label=label)
        for (ref, loss, accuracy), style in zip(_reference_lines(store, group), ("--", ":")):
            axes[row, 0].axhline(loss, color="grey", ls=style, label=ref)
            axes[row, 1].axhline(100 * accuracy, color="grey", ls=style, label=ref)
        title = f"t_w = {attrs['t_w']}" if "t_w" in attrs else name
        axes[row, 0].set(xlabel="α (0: CNN, 1: eFCN)", ylabel="train loss", title=f"{title}: train loss")
        axes[row, 1].set(xlabel="α (0: CNN, 1: eFCN)", ylabel="test accuracy (%)", title=f"{title}: test accuracy")
    axes[0, 1].legend(fontsize=8)
    fig.suptitle("Fig. 6: interpolating between the CNN and the eFCN it stemmed from")
    return fig


def interpolation_peaks(store: h5py.File) -> list[dict]:
    """Per interpolation and method: the α of the best test accuracy and its gain over the better endpoint."""
    rows = []
    for name, group in interpolation_groups(store):
        for method in METHOD_STYLE:
            if method not in group:
                continue
            curve = read_curve(group[method])
            best = int(np.nanargmax(curve["test_acc"]))
            endpoints = max(curve["test_acc"][0], curve["test_acc"][-1])
            rows.append({"name": name, "t_w": read_attrs(group).get("t_w"), "method": method, "alpha": float(curve["alpha"][best]),
                         "peak_acc": float(curve["test_acc"][best]), "gain": float(curve["test_acc"][best] - endpoints),
                         "barrier": read_attrs(group[method]).get("barrier")})
    return rows


SHARPNESS = "python -m runners.sharpness --run-dir DIR --out R.h5 (or runners.reproduce)"


def _sharpness_runs(store: h5py.File) -> dict[str, tuple[dict, np.ndarray]]:
    """Per probed run: its curve (one row per checkpoint) and its (rows, k) top eigenvalues."""
    if "sharpness" not in store or not len(store["sharpness"]):
        raise MissingData("/sharpness", SHARPNESS)
    return {name: (read_curve(group["curve"]), group["top_eigs"][()]) for name, group in store["sharpness"].items()}


def sharpness_vs_gain(store: h5py.File) -> plt.Figure:
    probed = _sharpness_runs(store)
    if "cnn" not in probed:
        raise MissingData("/sharpness/cnn (the CNN's snapshots)", SHARPNESS)
    curve, eigs = probed["cnn"]
    along = curve["final"] == 0
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    axes[0].plot(curve["epoch"][along], eigs[along, 0], "o-", color="tab:red", label="top eigenvalue λ₁")
    axes[0].set(xlabel="CNN training epoch", ylabel="λ₁ of the train-loss Hessian", title="sharpness along CNN training")
    twin = axes[0].twinx()
    twin.plot(curve["epoch"][along], curve["trace"][along], "s--", color="tab:purple", label="trace")
    twin.set_ylabel("Hessian trace")
    twin.grid(False)
    axes[0].legend(loc="upper left")
    twin.legend(loc="upper right")
    all_runs = runs(store)
    cnn_acc = all_runs.get("cnn", {}).get("final_test_acc")
    gains = sorted((a["t_w"], 100 * (a["final_test_acc"] - cnn_acc)) for a in all_runs.values()
                   if a.get("space") == "efcn" and "t_w" in a and "tw1" not in a) if cnn_acc is not None else []
    if not gains:
        raise MissingData("eFCN runs in /runs to compute the relax gain", "python -m runners.relax")
    sharp_at = dict(zip(curve["epoch"][along].astype(int), eigs[along, 0]))
    t_w, gain = zip(*gains)
    axes[1].plot(t_w, gain, "o-", color="tab:blue", label="relax gain (eFCN − final CNN)")
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[1].set(xlabel="relax time t_w", ylabel="test accuracy gain (points)", title="gain of relaxing at t_w vs sharpness there")
    if any(t in sharp_at for t in t_w):
        right = axes[1].twinx()
        right.plot([t for t in t_w if t in sharp_at], [sharp_at[t] for t in t_w if t in sharp_at], "^:", color="tab:red", label="λ₁ at t_w")
        right.set_ylabel("λ₁ of the CNN at t_w")
        right.grid(False)
        right.legend(loc="upper right")
    axes[1].legend(loc="upper left")
    fig.suptitle("Sharpness along CNN training and the gain of relaxing at t_w (poster: largest where it is sharpest)")
    return fig


def basin_widths(store: h5py.File) -> plt.Figure:
    probed = _sharpness_runs(store)
    bars = []
    for name, (curve, eigs) in probed.items():
        final = np.flatnonzero(curve["final"] == 1)
        if len(final):
            row = final[-1]
            bars.append((name, curve["basin_width"][row], curve["basin_width_std"][row], eigs[row, 0]))
    if not bars:
        raise MissingData("final checkpoints in /sharpness", SHARPNESS)
    order = {"cnn": 0, "fcn": 2}
    bars.sort(key=lambda b: (order.get(b[0], 1), int("".join(filter(str.isdigit, b[0])) or 0), b[0]))
    names, width, spread, top = zip(*bars)
    colours = ["tab:red" if n == "cnn" else "saddlebrown" if n == "fcn" else "tab:blue" for n in names]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    axes[0].bar(names, width, yerr=spread, color=colours, capsize=3)
    axes[0].set(ylabel="basin width (filter-normalised distance)", title="basin width at the end of training")
    axes[1].bar(names, top, color=colours)
    axes[1].set(ylabel="λ₁", yscale="log", title="top Hessian eigenvalue at the end of training")
    for ax in axes:
        ax.tick_params(axis="x", rotation=45)
    fig.suptitle("Poster: do eFCNs reach wider basins than the CNN and the vanilla FCN?")
    return fig


def sharpness_rows(store: h5py.File) -> tuple[list[str], list[list[str]]]:
    """The table behind the sharpness figures: one row per probed checkpoint."""
    header = ["run", "epoch", "final", "λ₁", "trace ± se", "basin width ± std", "train loss"]
    rows = []
    for name, (curve, eigs) in _sharpness_runs(store).items():
        for i in range(len(curve["epoch"])):
            rows.append([name, f"{curve['epoch'][i]:.0f}", "yes" if curve["final"][i] else "", f"{eigs[i, 0]:.4g}",
                         f"{curve['trace'][i]:.4g} ± {curve['trace_se'][i]:.2g}",
                         f"{curve['basin_width'][i]:.3g} ± {curve['basin_width_std'][i]:.2g}", f"{curve['train_loss'][i]:.4g}"])
    return header, rows
