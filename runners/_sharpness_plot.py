"""Figures of a ``runners.sharpness`` result file: sharpness along training, relax gain, loss surfaces.

* ``<out>_sharpness.png/.pdf``: top Hessian eigenvalue and trace against the epoch, one line per run;
  when the relax results are given, a third panel puts the relax gain (eFCN final test accuracy minus
  the CNN's test accuracy at the switch time :math:`t_w`) next to the CNN's sharpness at :math:`t_w`.
* ``<out>_surfaces.png/.pdf``: the last checkpoint's loss surface of each run (a line or contours).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only: no display on servers and in tests
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from results import read_attrs, read_curve  # noqa: E402


def _relax_gain(relax: Path) -> tuple[np.ndarray, np.ndarray]:
    """(t_w, eFCN final test accuracy - CNN test accuracy at t_w) of a relax result file."""
    with h5py.File(relax, "r") as store:
        if "runs/cnn/history" not in store:
            return np.array([]), np.array([])
        history = read_curve(store["runs/cnn/history"])
        cnn_acc = dict(zip(history["epoch"].tolist(), history["test_acc"].tolist()))
        points = []
        for name, group in store["runs"].items():
            attrs = read_attrs(group)
            if name.startswith("efcn_tw") and "t_w" in attrs and "final_test_acc" in attrs and attrs["t_w"] in cnn_acc:
                points.append((attrs["t_w"], attrs["final_test_acc"] - cnn_acc[attrs["t_w"]]))
    points.sort()
    return np.array([p[0] for p in points]), np.array([p[1] for p in points])


def _save(figure, results: str | os.PathLike, suffix: str) -> list[Path]:
    stem = Path(results).with_suffix("")
    paths = [Path(f"{stem}_{suffix}.{ext}") for ext in ("png", "pdf")]
    for path in paths:
        figure.savefig(path, dpi=150)
    plt.close(figure)
    return paths


def plot_sharpness(results: str | os.PathLike, relax: Path | None = None) -> list[Path]:
    """Draw the figures of ``results``; ``relax`` is the run's ``results.h5`` (gain panel when it exists)."""
    sns.set_theme(style="whitegrid", context="paper")
    with h5py.File(results, "r") as store:
        runs = {
            name: (read_curve(group["curve"]), group["top_eigs"][()],
                   {key: read_curve(sub) for key, sub in group.items() if key.startswith("surface_")})
            for name, group in store["sharpness"].items()
        }
    gain_t, gain = _relax_gain(relax) if relax is not None and relax.is_file() else (np.array([]), np.array([]))
    panels = 3 if len(gain_t) else 2
    figure, axes = plt.subplots(1, panels, figsize=(4 * panels, 3.2), constrained_layout=True)
    for name, (curve, eigs, _) in runs.items():
        style = {"marker": "o"} if len(curve["row"]) > 1 else {"marker": "s", "linestyle": "none"}
        axes[0].plot(curve["epoch"], eigs[:, 0], label=name, **style)
        axes[1].plot(curve["epoch"], curve["trace"], label=name, **style)
    axes[0].set(xlabel="epoch", ylabel=r"$\lambda_{\max}$", title="top Hessian eigenvalue")
    axes[1].set(xlabel="epoch", ylabel="trace", title="Hessian trace")
    axes[0].legend(fontsize="small")
    if len(gain_t):
        axes[2].plot(gain_t, gain, marker="o", color="tab:green", label="relax gain")
        axes[2].set(xlabel=r"switch time $t_w$", ylabel="eFCN - CNN test accuracy", title="relax gain vs CNN sharpness")
        if "cnn" in runs:
            curve, eigs, _ = runs["cnn"]
            twin = axes[2].twinx()
            twin.plot(curve["epoch"], eigs[:, 0], marker="x", color="tab:red", label=r"CNN $\lambda_{\max}$")
            twin.set_ylabel(r"CNN $\lambda_{\max}$")
            twin.grid(False)
    paths = _save(figure, results, "sharpness")
    surfaces = {name: s[max(s, key=lambda key: int(key.split("_")[1]))] for name, (_, _, s) in runs.items() if s}
    if surfaces:
        figure, axes = plt.subplots(1, len(surfaces), figsize=(4 * len(surfaces), 3.2), constrained_layout=True, squeeze=False)
        for ax, (name, surface) in zip(axes[0], surfaces.items()):
            axis, loss = surface["axis"], surface["loss"]
            if loss.ndim == 1:
                ax.plot(axis, loss)
                ax.set(xlabel="distance along d (filter norms)", ylabel="train loss")
            else:
                contour = ax.contour(axis, axis, loss.T, levels=15)
                ax.clabel(contour, fontsize="x-small")
                ax.set(xlabel=r"$d_1$", ylabel=r"$d_2$")
            ax.set_title(name)
        paths += _save(figure, results, "surfaces")
    return paths
