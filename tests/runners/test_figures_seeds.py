"""Figures over seeds: runs grouped by their protocol_run / seed attributes, points as results.summarize says.

The synthetic file holds three seeds of the relax protocol whose numbers are chosen here, so every mean
and CI the readers return is checked against ``results.summarize`` / ``results.paired`` of those numbers.
"""

from __future__ import annotations

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pytest

from results import CurveWriter, open_store, paired, summarize, write_attrs
from runners import figures, relax, weights
from runners._figures import FIGURES, MissingData, make_figures
from runners._figures.paper import WEIGHT_FLOOR, log_weights
from runners._figures.readers import expandnets_runs
from runners._figures.seed_readers import (hierarchical_vs_single, history_stats, interpolation_stats, probe_stats, seed_runs,
                                           switch_gain_stats, switch_stats)
from runners.weights import filter_index_matrix

COLUMNS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "delta", "lr")
SEEDS = (0, 1, 2)
T_W = (0, 2, 4)
CNN_ACC = {0: 0.90, 1: 0.86, 2: 0.88}
# eFCN final accuracy per (t_w, seed): the seed offset follows the CNN's, so the paired gain varies little.
EFCN_ACC = {(t, s): CNN_ACC[s] + gain + 0.002 * s for t, gain in zip(T_W, (-0.05, 0.02, 0.01)) for s in SEEDS}
DELTA = {(t, s): 0.5 / (1 + t) + 0.01 * s for t in T_W for s in SEEDS}


def _run(store, name, attrs, epochs, final_acc, delta, first_loss=2.0):
    writer = CurveWriter(store, f"runs/{name}/history", columns=COLUMNS, index="epoch")
    for epoch in range(epochs + 1):
        progress = epoch / epochs
        writer.append(epoch=epoch, train_loss=first_loss - progress, train_acc=progress, test_loss=2 - progress,
                      test_acc=0.1 + (final_acc - 0.1) * progress, delta=delta * progress, lr=1e-3)
    write_attrs(store[f"runs/{name}"], {"epochs": epochs, "final_test_acc": final_acc, "final_train_loss": first_loss - 1,
                                        "final_delta": delta, "num_params": 1000, **attrs})


def _seeded(store, protocol, seed, attrs, *args, **kwargs):
    _run(store, f"{protocol}_s{seed}", {"protocol_run": protocol, "seed": seed, **attrs}, *args, **kwargs)


@pytest.fixture()
def seeds_file(tmp_path):
    path = tmp_path / "results.h5"
    with open_store(path) as store:
        write_attrs(store.require_group("runs"), {"config": {"seed": 0, "data": "digits"}})
        for s in SEEDS:
            _seeded(store, "cnn", s, {"space": "cnn"}, 8, CNN_ACC[s], np.nan)
            _seeded(store, "fcn", s, {"space": "fcn", "local_only_acc": 0.1, "offlocal_only_acc": 0.5}, 8, 0.6 + 0.01 * s, 0.95)
            for t in T_W:
                masked = {"local_only_acc": 0.5 + 0.05 * t + 0.01 * s, "offlocal_only_acc": 0.1}
                _seeded(store, f"efcn_tw{t}", s, {"space": "efcn", "t_w": t, **masked}, 4, EFCN_ACC[t, s], DELTA[t, s],
                        first_loss=2.0 - 0.1 * t + 0.01 * s)
                _seeded(store, f"elcn_tw{t}", s, {"space": "elcn", "t_w": t}, 4, EFCN_ACC[t, s] - 0.01, 0.0)
            for tw1, tw2 in ((0, 2), (0, 3)):  # efcn_tw2 is the equal-budget reference of (0, 2); (0, 3) has none
                _seeded(store, f"efcn_tw1_{tw1}_tw2_{tw2}", s, {"space": "efcn", "tw1": tw1, "tw2": tw2}, 4,
                        EFCN_ACC[2, s] + 0.01 * (s + 1), 0.1)
            for t in (0, 4):
                group = store.require_group(f"interpolation/tw{t}_s{s}")
                write_attrs(group, {"t_w": t, "seed": s})
                curve = CurveWriter(group, "linear", columns=("alpha", "train_loss", "train_acc", "test_loss", "test_acc"), index="alpha")
                for alpha in np.linspace(0, 1, 5):
                    curve.append(alpha=alpha, train_loss=1 + alpha * (1 - alpha) + 0.1 * s, train_acc=0.9, test_loss=1.0,
                                 test_acc=0.8 + 0.01 * s + 0.05 * alpha)
        group = store.require_group("weights")
        group.create_dataset("fig1/filter_index", data=filter_index_matrix())
        embedded = np.zeros((1, 8, 8))
        embedded[0, 3:6, 3:6] = 0.5  # a 3x3 receptive field in the middle; every off-local weight exactly 0
        for t in (0, 4):
            for s in SEEDS:
                panel = group.require_group(f"fig5/efcn_tw{t}_s{s}")
                panel.create_dataset("embedded", data=embedded)
                panel.create_dataset("trained", data=embedded + 1e-3)
                write_attrs(panel, {"t_w": t, "epochs": 4})
            block = group.require_group(f"fig2/efcn_tw{t}_s0")
            block.create_dataset("embedded", data=np.eye(36, 64))
            block.create_dataset("trained", data=np.eye(36, 64) + 1e-3)
            write_attrs(block, {"t_w": t, "epochs": 4})
    return path


def _assert_summary(stats, row, values):
    expected = summarize(values)
    assert stats.n[row] == expected.n == len(values)
    np.testing.assert_allclose([stats.mean[row], stats.ci_low[row], stats.ci_high[row]],
                               [expected.mean, expected.ci_low, expected.ci_high], rtol=1e-12)


def test_runs_are_grouped_by_their_protocol_run_and_seed_attributes(seeds_file):
    with h5py.File(seeds_file, "r") as store:
        grouped = seed_runs(store)
    assert grouped["efcn_tw2"] == {0: "efcn_tw2_s0", 1: "efcn_tw2_s1", 2: "efcn_tw2_s2"}
    assert set(grouped) == {"cnn", "fcn", *(f"{space}_tw{t}" for space in ("efcn", "elcn") for t in T_W),
                            "efcn_tw1_0_tw2_2", "efcn_tw1_0_tw2_3"}


def test_single_seed_files_fall_back_to_run_names_and_the_config_seed(tmp_path):
    path = tmp_path / "old.h5"
    with open_store(path) as store:
        write_attrs(store.require_group("runs"), {"config": {"seed": 7}})
        _run(store, "cnn", {"space": "cnn"}, 2, 0.9, np.nan)
        _run(store, "efcn_tw1", {"space": "efcn", "t_w": 1}, 2, 0.92, 0.3)
    with h5py.File(path, "r") as store:
        assert seed_runs(store) == {"cnn": {7: "cnn"}, "efcn_tw1": {7: "efcn_tw1"}}
        gain = switch_gain_stats(store)
    np.testing.assert_allclose(gain.mean, [0.02])
    assert np.isnan(gain.ci_low).all() and gain.n.tolist() == [1]  # one seed: no CI, drawn as before


def test_fig4_and_fig5_points_are_the_summaries_of_the_seeds(seeds_file):
    with h5py.File(seeds_file, "r") as store:
        delta = switch_stats(store, "final_delta")
        accuracy = switch_stats(store, "final_test_acc")
        loss = switch_stats(store, "initial_train_loss")
        local = switch_stats(store, "local_only_acc")
    assert delta.x.tolist() == list(T_W) and delta.seeds == SEEDS
    for row, t in enumerate(T_W):
        _assert_summary(delta, row, [DELTA[t, s] for s in SEEDS])
        _assert_summary(accuracy, row, [EFCN_ACC[t, s] for s in SEEDS])
        _assert_summary(loss, row, [2.0 - 0.1 * t + 0.01 * s for s in SEEDS])
        _assert_summary(local, row, [0.5 + 0.05 * t + 0.01 * s for s in SEEDS])
        np.testing.assert_allclose(accuracy.values[row], [EFCN_ACC[t, s] for s in SEEDS])


def test_gains_are_paired_by_seed(seeds_file):
    with h5py.File(seeds_file, "r") as store:
        gains = switch_gain_stats(store)
    for row, t in enumerate(T_W):
        expected = paired([EFCN_ACC[t, s] for s in SEEDS], [CNN_ACC[s] for s in SEEDS])
        np.testing.assert_allclose([gains.mean[row], gains.ci_low[row], gains.ci_high[row]],
                                   [expected.mean, expected.ci_low, expected.ci_high], rtol=1e-12)
    # pairing removes the CNN's seed-to-seed spread: the CI is far narrower than the unpaired accuracies'
    unpaired = summarize([EFCN_ACC[2, s] for s in SEEDS])
    assert gains.ci_high[1] - gains.ci_low[1] < 0.25 * (unpaired.ci_high - unpaired.ci_low)
    assert gains.ci_low[1] > 0


def test_gains_use_the_final_cnn_at_its_reference_epoch_and_the_matched_cnn(tmp_path):
    # matched controls: the CNN trained 6 epochs, the final CNN is its row at reference_epoch 4 (acc 0.1 + 0.8 * 4/6)
    path = tmp_path / "matched.h5"
    with open_store(path) as store:
        for s in (0, 1):
            _seeded(store, "cnn", s, {"space": "cnn", "reference_epoch": 4, "reference_test_acc": 0.1 + 0.8 * 4 / 6}, 6, 0.9, np.nan)
            _seeded(store, "efcn_tw2", s, {"space": "efcn", "t_w": 2}, 3, 0.8 + 0.01 * s, 0.1)
    with h5py.File(path, "r") as store:
        final = switch_gain_stats(store)
        matched = switch_gain_stats(store, reference="matched")
    np.testing.assert_allclose(final.values, [[0.8 - (0.1 + 0.8 * 4 / 6), 0.81 - (0.1 + 0.8 * 4 / 6)]])
    np.testing.assert_allclose(matched.values, [[0.8 - (0.1 + 0.8 * 5 / 6), 0.81 - (0.1 + 0.8 * 5 / 6)]])  # CNN at 2 + 3 epochs


def test_fig3_cnn_curve_is_the_mean_over_seeds_per_epoch(seeds_file):
    with h5py.File(seeds_file, "r") as store:
        cnn = history_stats(store, "cnn", "test_acc")
    assert cnn.x.tolist() == list(range(9))
    _assert_summary(cnn, 8, list(CNN_ACC.values()))
    _assert_summary(cnn, 4, [0.1 + (CNN_ACC[s] - 0.1) * 0.5 for s in SEEDS])


def test_hierarchical_runs_are_compared_with_the_equal_budget_single_relaxation(seeds_file):
    with h5py.File(seeds_file, "r") as store:
        equal = {(c.tw1, c.tw2): c for c in hierarchical_vs_single(store)}
        switch = {(c.tw1, c.tw2): c for c in hierarchical_vs_single(store, equal_budget=False)}
    # CNN 0 epochs + eLCN 2 + eFCN E has seen as many epochs as efcn_tw2 (2 + E), not efcn_tw0 (E)
    assert equal[0, 2].reference == "efcn_tw2" and switch[0, 2].reference == "efcn_tw0"
    ours = [EFCN_ACC[2, s] + 0.01 * (s + 1) for s in SEEDS]
    expected = paired(ours, [EFCN_ACC[2, s] for s in SEEDS])
    assert equal[0, 2].difference == expected
    np.testing.assert_allclose(list(equal[0, 2].per_seed.values()), [0.01, 0.02, 0.03])
    assert switch[0, 2].difference == paired(ours, [EFCN_ACC[0, s] for s in SEEDS])
    assert equal[0, 3].reference == "efcn_tw3" and equal[0, 3].difference.n == 0  # not run: no comparison


def test_fig6_groups_interpolation_paths_by_t_w_over_seeds(seeds_file):
    with h5py.File(seeds_file, "r") as store:
        groups = interpolation_stats(store)
    assert [g.t_w for g in groups] == [0, 4] and groups[0].names == {s: f"tw0_s{s}" for s in SEEDS}
    accuracy = groups[1].curves["linear"]["test_acc"]
    np.testing.assert_allclose(accuracy.x, np.linspace(0, 1, 5))
    _assert_summary(accuracy, 4, [0.85 + 0.01 * s for s in SEEDS])
    assert [line.label for line in groups[0].references] == ["CNN (mean of 3 seeds)", "FCN (mean of 3 seeds)"]
    np.testing.assert_allclose(groups[0].references[0].test_acc, np.mean(list(CNN_ACC.values())))


def test_fig5_draws_ln_abs_weights_with_a_floor_for_zeros():
    np.testing.assert_allclose(log_weights(np.array([0.0, -np.e, 1e-9])), [np.log(WEIGHT_FLOOR), 1.0, np.log(WEIGHT_FLOOR)])


def _clipped_or_covered(fig: plt.Figure) -> list[str]:
    """Data points outside their axes' limits, and legends overlapping their axes."""
    fig.canvas.draw()
    problems = []
    for ax in fig.axes:
        (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
        for line in ax.get_lines():
            xy = np.asarray(line.get_xydata(), dtype=float)
            xy = xy[np.isfinite(xy).all(axis=1)]
            if len(xy) and line.get_transform() == ax.transData and ((xy[:, 0] < x0) | (xy[:, 0] > x1) | (xy[:, 1] < y0) | (xy[:, 1] > y1)).any():
                problems.append(f"{ax.get_title()!r}: {line.get_label()} clipped")
        legend = ax.get_legend()
        if legend is not None and legend.get_window_extent().overlaps(ax.get_window_extent()):
            problems.append(f"{ax.get_title()!r}: legend inside the axes")
    return problems


@pytest.mark.parametrize("name", ["fig3_dynamics", "fig4_delta", "fig5_filters_blocks", "fig6_interpolation",
                                  "poster_hierarchical", "poster_elcn_vs_efcn"])
def test_seed_figures_keep_every_point_inside_and_legends_off_the_data(seeds_file, name):
    with h5py.File(seeds_file, "r") as store:
        fig = FIGURES[name](store)
    try:
        assert _clipped_or_covered(fig) == []
    finally:
        plt.close(fig)


def test_poster_sharpness_averages_the_seeds_probes(seeds_file):
    with h5py.File(seeds_file, "a") as store:
        for s in SEEDS:
            curve = CurveWriter(store, f"sharpness/cnn_s{s}/curve", columns=("row", "epoch", "final", "trace"), index="row")
            for row, (epoch, final) in enumerate(((2, 0), (4, 0), (8, 1))):
                curve.append(row=row, epoch=epoch, final=final, trace=10.0 + row + s)
            store[f"sharpness/cnn_s{s}"].create_dataset("top_eigs", data=np.array([[3.0 + s], [2.0 + s], [1.0]]))
            write_attrs(store[f"sharpness/cnn_s{s}"], {"seed": s, "protocol_run": "cnn"})
    with h5py.File(seeds_file, "r") as store:
        top = probe_stats(store, "cnn", "top_eig")
        fig = FIGURES["poster_sharpness"](store)
    assert top.x.tolist() == [2, 4]  # snapshots along training, not the final row
    _assert_summary(top, 0, [3.0 + s for s in SEEDS])
    try:
        assert _clipped_or_covered(fig) == []
    finally:
        plt.close(fig)


def test_every_seed_figure_is_written_as_png_and_pdf(seeds_file, tmp_path):
    written, skipped = make_figures(seeds_file, tmp_path / "figs")
    assert {"fig1_efcn_matrix", "fig2_weight_heatmaps", "fig3_dynamics", "fig4_delta", "fig5_filters_blocks",
            "fig6_interpolation", "poster_hierarchical", "poster_elcn_vs_efcn"} <= set(written)
    for paths in written.values():
        assert sorted(p.suffix for p in paths) == [".pdf", ".png"] and all(p.stat().st_size > 1000 for p in paths)


def test_expandnets_figures_draw_from_a_merged_file(tmp_path, seeds_file):
    # a reproduction: the relax runs in /runs, the ExpandNets runs merged under /expandnets/runs
    with h5py.File(seeds_file, "a") as store:
        for mode in ("compact", "ck"):
            for seed in (0, 1):
                name = f"expandnets/runs/{mode}_seed{seed}"
                curve = CurveWriter(store, f"{name}/history", columns=("epoch", "train_acc", "test_acc", "min_cosine"), index="epoch")
                for epoch in range(3):
                    curve.append(epoch=epoch, train_acc=0.5 + 0.25 * epoch, test_acc=0.4 + 0.1 * epoch, min_cosine=-0.1 * epoch)
                write_attrs(store[name], {"mode": mode, "l2": "normal", "seed": seed, "status": "done"})
    with h5py.File(seeds_file, "r") as store:
        assert list(expandnets_runs(store)) == ["compact", "ck"] and len(expandnets_runs(store, "expandnets/runs")["ck"]) == 2
        with pytest.raises(MissingData, match="runners.expandnets"):
            expandnets_runs(store, "runs")  # the relax runs are not ExpandNets runs
    written, _ = make_figures(seeds_file, tmp_path / "figs", only=["expandnets_training", "expandnets_gradient_confusion"])
    assert set(written) == {"expandnets_training", "expandnets_gradient_confusion"}


@pytest.mark.slow
def test_digits_relax_folder_gives_a_2d_fig5(tmp_path):
    # two seeds: runners.weights copies the lowest seed's runs, from its own CNN's snapshots (checkpoints/cnn_s0)
    run_dir = tmp_path / "digits"
    assert relax.main(["--data", "digits", "--channels", "2", "--arch-kwargs", '{"pool": false}', "--epochs", "2", "--seeds", "2",
                       "--relax-epochs", "1", "--n-train", "64", "--t-w", "0,1", "--tw1", "", "--out", str(run_dir), "--quiet"]) == 0
    assert weights.main(["--run-dir", str(run_dir)]) == 0
    with h5py.File(run_dir / "results.h5", "r") as store:
        assert sorted(store["weights/fig5"]) == ["efcn_tw0_s0", "efcn_tw1_s0"]
        panel = store["weights/fig5/efcn_tw0_s0"]
        assert panel["embedded"].shape == panel["trained"].shape == (1, 8, 8)
        assert (panel["embedded"][()] == 0).any()  # off-local weights right after embedding: drawn at the floor
    assert figures.main(["--results", str(run_dir / "results.h5"), "--out", str(tmp_path / "figs"), "--only", "fig5_filters_blocks"]) == 0
    assert (tmp_path / "figs" / "fig5_filters_blocks.png").stat().st_size > 1000
