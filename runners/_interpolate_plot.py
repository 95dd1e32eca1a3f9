"""``runners.interpolate --plot``: the paper's Fig. 6 for one path, drawn by the figures runner's code.

One row, two panels: train loss (left) and test accuracy (right) against alpha, one line per method,
with the endpoints' values as reference lines labelled by their spaces (CNN at alpha = 0, eFCN at 1).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in tests
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from runners._figures_landscape import fig6_interpolation  # noqa: E402


def plot_paths(results: str | os.PathLike, name: str) -> list[Path]:
    """Draw ``/interpolation/<name>`` of ``results`` into ``<results stem>_<name>.png`` and ``.pdf``.

    Returns:
        The two files written.
    """
    sns.set_theme(style="whitegrid", context="notebook", rc={"figure.constrained_layout.use": True})
    with h5py.File(results, "r") as store:
        figure = fig6_interpolation(store, names=[name])
    stem = Path(results).with_suffix("")
    paths = [Path(f"{stem}_{name}.{ext}") for ext in ("png", "pdf")]
    for path in paths:
        figure.savefig(path, dpi=130)
    plt.close(figure)
    return paths
