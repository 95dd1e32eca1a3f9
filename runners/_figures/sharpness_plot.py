"""Figures of a ``runners.sharpness`` result file (``runners.sharpness --plot``).

* ``<out>_sharpness.png/.pdf``: top Hessian eigenvalue and trace against the epoch, one line per run, in
  the eFCN's coordinates when the file has them (``--coordinates``; the titles say which);
  when the relax results are given, a third panel puts the relax gain
  (:func:`~runners._figures.readers.gain_vs_final_cnn`: eFCN final test accuracy minus the final CNN's
  test accuracy, the same numbers as the figures runner's ``poster_sharpness``) next to the CNN's sharpness.
* ``<out>_surfaces.png/.pdf``: the last checkpoint's loss surface of each run (a line or contours).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt

from runners._figures.landscape import RELAX_GAIN_LABEL
from runners._figures.landscape_readers import figure_coordinates, sharpness_runs
from runners._figures.readers import MissingData, RelaxGains, open_results, relax_gains
from runners._figures.style import save_figure, set_style


def _gains(relax: Path | None) -> RelaxGains | None:
    """The relax gains of the relax file ``relax``, or None when there is no file or no gain to compute."""
    if relax is None or not relax.is_file():
        return None
    with open_results(relax) as store:
        try:
            return relax_gains(store)
        except MissingData:
            return None


def plot_sharpness(results: str | os.PathLike, relax: Path | None = None) -> list[Path]:
    """Draw the figures of ``results``; ``relax`` is the run's ``results.h5`` (gain panel when it has the runs).

    Returns:
        The files written: the sharpness figure's PNG and PDF, then the surfaces' when any run has one.
    """
    set_style("paper")
    with open_results(results) as store:
        probed = sharpness_runs(store)
    gains = _gains(relax)
    panels = 3 if gains is not None else 2
    figure, axes = plt.subplots(1, panels, figsize=(4 * panels, 3.2))
    coordinates = figure_coordinates(probed)  # the eFCN's when probed there: CNN and eFCN comparable
    where = "eFCN coordinates" if coordinates == "efcn" else "own coordinates"
    for name, run in probed.items():
        style = {"marker": "o"} if len(run.curve["row"]) > 1 else {"marker": "s", "linestyle": "none"}
        axes[0].plot(run.curve["epoch"], run.top_eig(coordinates), label=name, **style)
        axes[1].plot(run.curve["epoch"], run.measure("trace", coordinates), label=name, **style)
    axes[0].set(xlabel="epoch", ylabel=r"$\lambda_{\max}$", title=f"top Hessian eigenvalue ({where})")
    axes[1].set(xlabel="epoch", ylabel="trace", title=f"Hessian trace ({where})")
    axes[0].legend(fontsize="small")
    if gains is not None:
        axes[2].plot(gains.t_w, 100 * gains.gain, marker="o", color="tab:green", label=RELAX_GAIN_LABEL)
        axes[2].set(xlabel=r"switch time $t_w$", ylabel="test accuracy gain (points)", title="relax gain vs CNN sharpness")
        if "cnn" in probed:
            cnn = probed["cnn"]
            twin = axes[2].twinx()
            twin.plot(cnn.curve["epoch"], cnn.top_eig(coordinates), marker="x", color="tab:red", label=r"CNN $\lambda_{\max}$")
            twin.set_ylabel(r"CNN $\lambda_{\max}$")
            twin.grid(False)
    stem = Path(results).with_suffix("")
    paths = save_figure(figure, f"{stem}_sharpness")
    surfaces = {name: surface for name, run in probed.items() if (surface := run.last_surface()) is not None}
    if surfaces:
        figure, axes = plt.subplots(1, len(surfaces), figsize=(4 * len(surfaces), 3.2), squeeze=False)
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
        paths += save_figure(figure, f"{stem}_surfaces")
    return paths
