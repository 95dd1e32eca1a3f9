"""The paper's Fig. 6 from an interpolation result file: train loss and test accuracy against alpha.

One row per path group, two panels: train loss (left) and test accuracy (right), one line per method
(linear orange, string blue, output green, the paper's colours), with the endpoints' values as dashed
reference lines labelled by their spaces (e.g. CNN at alpha = 0, eFCN at alpha = 1).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in tests
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from results import read_attrs, read_curve  # noqa: E402

COLOURS = {"linear": "tab:orange", "string": "tab:blue", "output": "tab:green"}


def plot_paths(results: str | os.PathLike, name: str) -> list[Path]:
    """Draw ``/interpolation/<name>`` of ``results`` into ``<results stem>_<name>.png`` and ``.pdf``.

    Returns:
        The two files written.
    """
    sns.set_theme(style="whitegrid", context="paper")
    with h5py.File(results, "r") as store:
        group = store[f"interpolation/{name}"]
        curves = {m: (read_curve(group[m]), read_attrs(group[m])) for m in COLOURS if m in group}
    figure, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(8, 3.2), constrained_layout=True)
    for method, (curve, _) in curves.items():
        loss_ax.plot(curve["alpha"], curve["train_loss"], marker=".", color=COLOURS[method], label=method)
        acc_ax.plot(curve["alpha"], curve["test_acc"], marker=".", color=COLOURS[method], label=method)
    attrs = next(iter(curves.values()))[1]
    for side, style in (("a", "--"), ("b", ":")):
        label = f"{attrs[f'space_{side}'].upper()} ({'alpha=0' if side == 'a' else 'alpha=1'})"
        loss_ax.axhline(attrs[f"train_{side}_loss"], color="grey", linestyle=style, linewidth=1, label=label)
        acc_ax.axhline(attrs[f"test_{side}_acc"], color="grey", linestyle=style, linewidth=1, label=label)
    loss_ax.set(xlabel=r"$\alpha$", ylabel="train loss", title="train loss")
    acc_ax.set(xlabel=r"$\alpha$", ylabel="test accuracy", title="test accuracy")
    acc_ax.legend(fontsize="small")
    figure.suptitle(name, fontsize="small")
    stem = Path(results).with_suffix("")
    paths = [Path(f"{stem}_{name}.{ext}") for ext in ("png", "pdf")]
    for path in paths:
        figure.savefig(path, dpi=150)
    plt.close(figure)
    return paths
