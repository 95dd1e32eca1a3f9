"""The paper's figures from an HDF5 results file: ``python -m runners.figures --results R.h5 --out DIR``.

Figures read HDF5 only, never retrain. Each is written as PNG and PDF; a figure whose data are not in
the file is skipped with one line naming the command that produces them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: figures go to files

import h5py  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from runners import _figures_expandnets as expandnets  # noqa: E402
from runners import _figures_landscape as landscape  # noqa: E402
from runners import _figures_paper as paper  # noqa: E402
from runners._figures_paper import MissingData  # noqa: E402

FIGURES: dict[str, Callable[[h5py.File], plt.Figure]] = {
    "fig1_efcn_matrix": paper.fig1_efcn_matrix,
    "fig2_weight_heatmaps": paper.fig2_weight_heatmaps,
    "fig3_dynamics": paper.fig3_dynamics,
    "fig4_delta": paper.fig4_delta,
    "fig5_filters_blocks": paper.fig5_filters_and_blocks,
    "fig6_interpolation": landscape.fig6_interpolation,
    "poster_sharpness": landscape.sharpness_vs_gain,
    "poster_basin_width": landscape.basin_widths,
    "poster_hierarchical": paper.hierarchical_gain,
    "poster_elcn_vs_efcn": paper.elcn_vs_efcn,
    "expandnets_training": expandnets.expandnets_training,
    "expandnets_gradient_confusion": expandnets.expandnets_gradient_confusion,
    "expandnets_surfaces": expandnets.expandnets_surfaces,
}


def make_figures(results: str | Path, out: str | Path, *, only: list[str] | None = None,
                 formats: tuple[str, ...] = ("png", "pdf")) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """Draw every figure whose data are in ``results``.

    Returns:
        ``(written, skipped)``: the files written per figure, and why each skipped figure was skipped.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sns.set_theme(style="whitegrid", context="notebook", rc={"figure.constrained_layout.use": True})
    written: dict[str, list[Path]] = {}
    skipped: dict[str, str] = {}
    with h5py.File(results, "r") as store:
        for name in only or FIGURES:
            try:
                fig = FIGURES[name](store)
            except MissingData as missing:
                skipped[name] = str(missing)
                continue
            written[name] = []
            for fmt in formats:
                path = out / f"{name}.{fmt}"
                fig.savefig(path, dpi=130)
                written[name].append(path)
            plt.close(fig)
    return written, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.figures", description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="HDF5 file written by runners.relax / interpolate / sharpness / reproduce")
    parser.add_argument("--out", required=True, help="folder for the PNG and PDF files")
    parser.add_argument("--only", default=None, help="comma-separated figure names: " + ", ".join(FIGURES))
    args = parser.parse_args(argv)
    if not Path(args.results).is_file():
        raise SystemExit(f"error: results file {args.results} does not exist; run python -m runners.reproduce --out DIR first")
    only = [name for name in args.only.split(",") if name] if args.only else None
    unknown = sorted(set(only or ()) - set(FIGURES))
    if unknown:
        raise SystemExit(f"error: unknown figure(s) {', '.join(unknown)}; choose among {', '.join(FIGURES)}")
    try:
        written, skipped = make_figures(args.results, args.out, only=only)
    except OSError as err:
        raise SystemExit(f"error: cannot read {args.results} as HDF5 ({err})") from None
    for name, paths in written.items():
        print(f"wrote {name}: {', '.join(str(p) for p in paths)}")
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
