"""The figures ``runners.figures`` and ``runners.reproduce`` draw, by file name, and the loop that draws them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import matplotlib.pyplot as plt

from runners._figures import expandnets, landscape, paper
from runners._figures.readers import MissingData, open_results
from runners._figures.style import FORMATS, save_figure, set_style

FIGURES: dict[str, Callable[[h5py.File], plt.Figure]] = {
    "fig1_efcn_matrix": paper.fig1_efcn_matrix,
    "fig2_weight_heatmaps": paper.fig2_weight_heatmaps,
    "fig3_dynamics": paper.fig3_dynamics,
    "fig4_delta": paper.fig4_delta,
    "fig5_filters_blocks": paper.fig5_filters_and_blocks,
    "fig6_interpolation": landscape.fig6_interpolation,
    "poster_sharpness": landscape.sharpness_vs_gain,
    "poster_gain_vs_sharpness": landscape.gain_against_sharpness,
    "poster_basin_width": landscape.basin_widths,
    "poster_hierarchical": paper.hierarchical_gain,
    "poster_elcn_vs_efcn": paper.elcn_vs_efcn,
    "expandnets_training": expandnets.expandnets_training,
    "expandnets_gradient_confusion": expandnets.expandnets_gradient_confusion,
    "expandnets_surfaces": expandnets.expandnets_surfaces,
}


def make_figures(results: str | Path, out: str | Path, *, only: list[str] | None = None,
                 formats: tuple[str, ...] = FORMATS) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """Draw every figure of :data:`FIGURES` (or of ``only``) whose data are in ``results`` into ``out/<name>.<fmt>``.

    Returns:
        ``(written, skipped)``: the files written per figure, and why each skipped figure was skipped.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    set_style()
    written: dict[str, list[Path]] = {}
    skipped: dict[str, str] = {}
    with open_results(results) as store:
        for name in only or FIGURES:
            try:
                figure = FIGURES[name](store)
            except MissingData as missing:
                skipped[name] = str(missing)
                continue
            written[name] = save_figure(figure, out / name, formats=formats)
    return written, skipped
