"""Fair landscape figures: coordinates named, censored basin widths never drawn as widths, gain against λ₁ at t_w."""

from __future__ import annotations

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pytest

from results import CurveWriter, open_store, write_attrs
from runners._figures.landscape import basin_widths
from runners._figures.readers import sharpness_runs

MEASURES = ("basin_width", "basin_width_std", "basin_censored")


def _probe_group(store, name, rows, *, efcn=None, attrs=None):
    """``/sharpness/<name>``: rows of (epoch, final, λ₁ own, basin width, std, censored); ``efcn`` the same λ₁/basin in eFCN coordinates."""
    columns = ("row", "epoch", "final", *MEASURES, *(m + "_efcn" for m in MEASURES))
    curve = CurveWriter(store, f"sharpness/{name}/curve", columns=columns, index="row")
    for row, (epoch, final, _, width, std, censored) in enumerate(rows):
        e = (efcn or {}).get(row, (np.nan, np.nan, np.nan, np.nan))
        curve.append(row=row, epoch=epoch, final=final, basin_width=width, basin_width_std=std, basin_censored=censored,
                     basin_width_efcn=e[1], basin_width_std_efcn=e[2], basin_censored_efcn=e[3])
    group = store[f"sharpness/{name}"]
    group.create_dataset("top_eigs", data=np.array([[r[2]] for r in rows]))
    group.create_dataset("top_eigs_efcn", data=np.array([[(efcn or {}).get(i, (np.nan,))[0]] for i in range(len(rows))]))
    write_attrs(group, attrs or {})


@pytest.fixture()
def basin_file(tmp_path):
    path = tmp_path / "basins.h5"
    with open_store(path) as store:
        # the CNN's search hit its cap (1.0) on half its rays in the eFCN's coordinates; not in its own
        _probe_group(store, "cnn", [(4, 1, 9.0, 0.2, 0.01, 0.0)], efcn={0: (3.0, 1.0, 0.0, 0.5)})
        _probe_group(store, "efcn_tw2", [(4, 1, 2.0, 0.6, 0.05, 0.0)], efcn={0: (2.0, 0.6, 0.05, 0.0)})
    return path


def test_censored_basin_width_is_nan_with_its_lower_bound(basin_file):
    with h5py.File(basin_file, "r") as store:
        cnn = sharpness_runs(store)["cnn"]
    assert cnn.basin("own").width.tolist() == [0.2]
    efcn = cnn.basin("efcn")
    assert np.isnan(efcn.width[0]) and np.isnan(efcn.std[0]) and efcn.lower_bound[0] == 1.0 and efcn.censored[0] == 0.5
    assert cnn.top_eig("efcn")[0] == 3.0 and cnn.top_eig("own")[0] == 9.0


def test_basin_figure_draws_a_censored_width_as_a_lower_bound_in_efcn_coordinates(basin_file):
    with h5py.File(basin_file, "r") as store:
        figure = basin_widths(store)
    width_axes, eig_axes = figure.axes[:2]
    solid = [p for p in width_axes.patches if p.get_hatch() is None]
    hatched = [p for p in width_axes.patches if p.get_hatch()]
    assert [round(p.get_height(), 9) for p in solid] == [0.0, 0.6]  # the cap is never a plain bar
    assert [p.get_height() for p in hatched] == [1.0] and "eFCN coordinates" in width_axes.get_title()
    assert [p.get_height() for p in eig_axes.patches] == [3.0, 2.0]  # λ₁ in the same (eFCN) coordinates
    legend = width_axes.get_legend()
    assert legend is not None and "cap" in legend.get_texts()[0].get_text()
    plt.close("all")
