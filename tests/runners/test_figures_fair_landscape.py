"""Fair landscape figures: coordinates named, censored basin widths never drawn as widths, gain against λ₁ at t_w."""

from __future__ import annotations

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pytest

from results import CurveWriter, open_store, write_attrs
from runners._figures import FIGURES, make_figures
from runners._figures.landscape import basin_widths
from runners._figures.landscape_readers import gain_vs_sharpness, sharpness_runs

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


SEEDS, T_WS = (0, 1, 2), (0, 2, 4, 6)


def _sharpness_at(t_w: int, seed: int) -> float:
    """The CNN's λ₁ (eFCN coordinates) at t_w for a seed: strictly increasing over every (t_w, seed)."""
    return 1.0 + 3.0 * t_w + seed


@pytest.fixture()
def gain_file(tmp_path):
    """3 seeds, eFCNs switched at 4 t_w; gain = 0.01 λ₁(eFCN coords), so Spearman ρ = 1 there; own-coordinate λ₁ reversed (ρ = -1)."""
    path = tmp_path / "gain.h5"
    with open_store(path) as store:
        for seed in SEEDS:
            cnn_acc = 0.8 + 0.01 * seed
            write_attrs(store.require_group(f"runs/cnn_s{seed}"),
                        {"space": "cnn", "final_test_acc": cnn_acc, "epochs": 8, "seed": seed, "protocol_run": "cnn"})
            for t_w in T_WS:
                write_attrs(store.require_group(f"runs/efcn_tw{t_w}_s{seed}"),
                            {"space": "efcn", "t_w": t_w, "epochs": 4, "seed": seed, "protocol_run": f"efcn_tw{t_w}",
                             "final_test_acc": cnn_acc + 0.01 * _sharpness_at(t_w, seed)})
            rows = [(t_w, 0, 100.0 - _sharpness_at(t_w, seed), 0.5, 0.1, 0.0) for t_w in (*T_WS, 8)]
            efcn = {i: (_sharpness_at(t_w, seed), 0.5, 0.1, 0.0) for i, t_w in enumerate(T_WS)}
            # the group's name says nothing: the pairing reads its attributes
            _probe_group(store, f"probe_{seed}", rows, efcn=efcn, attrs={"seed": seed, "protocol_run": "cnn"})
    return path


def test_gain_vs_sharpness_pairs_each_seed_and_t_w_and_ranks_them(gain_file):
    with h5py.File(gain_file, "r") as store:
        efcn = gain_vs_sharpness(store, coordinates="efcn")
        own = gain_vs_sharpness(store, coordinates="own")
    assert efcn.t_w.tolist() == [t for t in T_WS for _ in SEEDS] and efcn.seed.tolist() == list(SEEDS) * len(T_WS)
    expected = [_sharpness_at(t, s) for t in T_WS for s in SEEDS]
    np.testing.assert_allclose(efcn.top_eig, expected)
    np.testing.assert_allclose(efcn.gain, 0.01 * np.array(expected), atol=1e-12)  # eFCN final minus its own seed's CNN
    assert efcn.correlation.rho == pytest.approx(1.0) and efcn.correlation.n == 12
    assert efcn.correlation.ci_low == pytest.approx(1.0)  # every resample of a monotone relation is monotone
    assert own.correlation.rho == pytest.approx(-1.0)  # the coordinates change the answer: a figure must name them


def test_gain_vs_sharpness_figure_draws_seeds_means_and_rho_with_the_legend_outside(gain_file):
    with h5py.File(gain_file, "r") as store:
        figure = FIGURES["poster_gain_vs_sharpness"](store)
    ax = figure.axes[0]
    assert "ρ = 1.00" in ax.get_title() and "95% CI [1.00, 1.00]" in ax.get_title() and "12 (seed, t_w)" in ax.get_title()
    assert "eFCN coordinates" in ax.get_xlabel()
    seed_dots = [line for line in ax.get_lines() if line.get_linestyle() == "None" and len(line.get_xdata()) == len(SEEDS)]
    assert len(seed_dots) == len(T_WS)
    means = [c for c in ax.containers if hasattr(c, "has_xerr")]
    assert len(means) == len(T_WS) and all(c.has_xerr and c.has_yerr for c in means)  # 3 seeds: CI bars on both axes
    np.testing.assert_allclose(means[1][0].get_ydata(), [100 * 0.01 * np.mean([_sharpness_at(2, s) for s in SEEDS])])
    figure.canvas.draw()
    legend, frame = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.x0 >= frame.x1  # right of the axes: never over a point
    plt.close("all")


def test_gain_vs_sharpness_figure_is_skipped_without_the_cnn_snapshots_at_t_w(tmp_path):
    path = tmp_path / "no_snapshots.h5"
    with open_store(path) as store:
        write_attrs(store.require_group("runs/cnn"), {"space": "cnn", "final_test_acc": 0.8, "epochs": 8})
        write_attrs(store.require_group("runs/efcn_tw2"), {"space": "efcn", "t_w": 2, "epochs": 4, "final_test_acc": 0.85})
        _probe_group(store, "cnn", [(8, 1, 5.0, 0.5, 0.1, 0.0)], efcn={0: (4.0, 0.5, 0.1, 0.0)})  # the final model only
    written, skipped = make_figures(path, tmp_path / "figs", only=["poster_gain_vs_sharpness"])
    assert not written and "snapshots at the switch times" in skipped["poster_gain_vs_sharpness"]
