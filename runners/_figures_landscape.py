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


def fig6_interpolation(store: h5py.File) -> plt.Figure:
    groups = interpolation_groups(store)
    references = {}
    if "runs" in store:
        all_runs = runs(store)
        references = {name.upper(): all_runs[name] for name in ("cnn", "fcn") if name in all_runs}
    fig, axes = plt.subplots(len(groups), 2, figsize=(11, 3.2 * len(groups)), squeeze=False)
    for row, (name, group) in enumerate(groups):
        attrs = read_attrs(group)
        for method, (colour, label) in METHOD_STYLE.items():
            if method not in group:
                continue
            curve = read_curve(group[method])
            axes[row, 0].plot(curve["alpha"], curve["train_loss"], color=colour, label=label)
            axes[row, 1].plot(curve["alpha"], 100 * curve["test_acc"], color=colour, label=label)
        for ref, style in zip(references, ("--", ":")):
            axes[row, 0].axhline(references[ref]["final_train_loss"], color="grey", ls=style, label=ref)
            axes[row, 1].axhline(100 * references[ref]["final_test_acc"], color="grey", ls=style, label=ref)
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
