"""Figures are drawn from HDF5 alone, and missing data are skipped with the command that makes them."""

from __future__ import annotations

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pytest

from results import CurveWriter, open_store, write_attrs
from runners import figures
from runners._figures import FIGURES, make_figures, plot_sharpness, relax_gains, save_figure, write_report
from runners._figures import sharpness_plot
from runners._figures.landscape import RELAX_GAIN_LABEL, sharpness_vs_gain
from runners.weights import filter_index_matrix

COLUMNS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "delta", "lr")


def _run(store, name, attrs, epochs, final_acc, delta):
    writer = CurveWriter(store, f"runs/{name}/history", columns=COLUMNS, index="epoch")
    for epoch in range(epochs + 1):
        progress = epoch / max(epochs, 1)
        writer.append(epoch=epoch, train_loss=2 - progress, train_acc=progress, test_loss=2 - progress,
                      test_acc=0.1 + (final_acc - 0.1) * progress, delta=delta * progress, lr=1e-3)
    write_attrs(store[f"runs/{name}"], {"epochs": epochs, "final_test_acc": final_acc, "final_train_loss": 1.0,
                                        "final_delta": delta, "num_params": 1000, **attrs})


@pytest.fixture()
def relax_file(tmp_path):
    path = tmp_path / "results.h5"
    with open_store(path) as store:
        _run(store, "cnn", {"space": "cnn"}, 8, 0.9, np.nan)
        _run(store, "fcn", {"space": "fcn", "local_only_acc": 0.1, "offlocal_only_acc": 0.5}, 8, 0.6, 0.95)
        for t_w, acc, delta in ((0, 0.8, 0.4), (2, 0.92, 0.2), (8, 0.9, 0.05)):
            _run(store, f"efcn_tw{t_w}", {"space": "efcn", "t_w": t_w, "local_only_acc": 0.7, "offlocal_only_acc": 0.1}, 4, acc, delta)
            _run(store, f"elcn_tw{t_w}", {"space": "elcn", "t_w": t_w}, 4, acc - 0.01, 0.0)
        _run(store, "efcn_tw1_0_tw2_2", {"space": "efcn", "tw1": 0, "tw2": 2}, 4, 0.91, 0.1)
        weights = store.require_group("weights")
        weights.create_dataset("fig1/filter_index", data=filter_index_matrix())
        for t_w in (0, 8):
            for fig, shape in (("fig2", (40, 40)), ("fig5", (1, 40))):
                group = weights.require_group(f"{fig}/efcn_tw{t_w}")
                group.create_dataset("embedded", data=np.eye(*shape))
                group.create_dataset("trained", data=np.eye(*shape) + 1e-3)
                write_attrs(group, {"t_w": t_w, "epochs": 4})
        for t_w in (0, 8):
            group = store.require_group(f"interpolation/tw{t_w}")
            write_attrs(group, {"t_w": t_w})
            for method in ("linear", "output"):
                curve = CurveWriter(group, method, columns=("alpha", "train_loss", "train_acc", "test_loss", "test_acc"), index="alpha")
                for alpha in np.linspace(0, 1, 5):
                    curve.append(alpha=alpha, train_loss=1 + alpha * (1 - alpha), train_acc=0.9, test_loss=1.0,
                                 test_acc=0.9 + 0.05 * alpha * (1 - alpha))
                write_attrs(curve.group, {"barrier": 0.25, "peak_test_acc": 0.9125, "peak_test_alpha": 0.5, "test_acc_gain": 0.0125})
    return path


def test_every_figure_with_data_is_written_as_png_and_pdf(relax_file, tmp_path):
    written, skipped = make_figures(relax_file, tmp_path / "figs")
    expected = {"fig1_efcn_matrix", "fig2_weight_heatmaps", "fig3_dynamics", "fig4_delta", "fig5_filters_blocks",
                "fig6_interpolation", "poster_hierarchical", "poster_elcn_vs_efcn"}
    assert expected <= set(written)
    for paths in written.values():
        assert sorted(p.suffix for p in paths) == [".pdf", ".png"] and all(p.stat().st_size > 1000 for p in paths)
    assert all("python -m runners" in why for why in skipped.values())


def test_missing_data_is_skipped_with_the_command_that_makes_it(tmp_path):
    empty = tmp_path / "empty.h5"
    with open_store(empty):
        pass
    written, skipped = make_figures(empty, tmp_path / "figs")
    assert written == {} and set(skipped) == set(FIGURES)
    assert "python -m runners.relax" in skipped["fig3_dynamics"]
    assert "python -m runners.interpolate" in skipped["fig6_interpolation"]


def test_cli_refuses_bad_input(tmp_path, relax_file, capsys):
    with pytest.raises(SystemExit, match="does not exist; run python -m runners.reproduce"):
        figures.main(["--results", str(tmp_path / "nope.h5"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="unknown figure"):
        figures.main(["--results", str(relax_file), "--out", str(tmp_path), "--only", "fig9"])
    assert figures.main(["--results", str(relax_file), "--out", str(tmp_path / "f"), "--only", "fig3_dynamics"]) == 0
    assert "wrote fig3_dynamics" in capsys.readouterr().out


def test_expandnets_figures_group_runs_by_expansion(tmp_path):
    path = tmp_path / "expandnets.h5"
    generator = np.random.default_rng(0)
    with open_store(path) as store:
        for mode in ("compact", "ck"):
            for seed in (0, 1):
                name = f"runs/{mode}_seed{seed}"
                curve = CurveWriter(store, f"{name}/history", columns=("epoch", "train_acc", "test_acc", "min_cosine"), index="epoch")
                for epoch in range(4):
                    curve.append(epoch=epoch, train_acc=0.5 + 0.1 * epoch, test_acc=0.4 + 0.1 * epoch, min_cosine=-0.1 * epoch)
                cosines = CurveWriter(store, f"{name}/final_cosines", columns=("pair", "cosine"), index="pair")
                for pair, value in enumerate(generator.uniform(-0.5, 0.5, 10)):
                    cosines.append(pair=pair, cosine=value)
                write_attrs(store[name], {"mode": mode, "l2": "normal", "seed": seed, "status": "done", "compressed_test_acc": 0.9})
    written, skipped = make_figures(path, tmp_path / "figs")
    assert {"expandnets_training", "expandnets_gradient_confusion"} <= set(written)
    assert "--probe-points" in skipped["expandnets_surfaces"] and "runners.relax" in skipped["fig3_dynamics"]


@pytest.fixture()
def sharpness_file(tmp_path):
    """A CNN of 4 epochs (test acc 0.6 at epoch 2, 0.85 at the end) with eFCNs switched at t_w = 2 and 4."""
    path = tmp_path / "sharpness.h5"
    with open_store(path) as store:
        cnn = CurveWriter(store, "runs/cnn/history", columns=COLUMNS, index="epoch")
        for epoch, acc in enumerate((0.1, 0.4, 0.6, 0.8, 0.85)):
            cnn.append(epoch=epoch, train_loss=1.0, train_acc=acc, test_loss=1.0, test_acc=acc, delta=0.0, lr=1e-3)
        write_attrs(store["runs/cnn"], {"space": "cnn", "final_test_acc": 0.85})
        for t_w, acc in ((2, 0.9), (4, 0.8)):
            _run(store, f"efcn_tw{t_w}", {"space": "efcn", "t_w": t_w}, 2, acc, 0.1)
        curve = CurveWriter(store, "sharpness/cnn/curve", columns=("row", "epoch", "final", "trace"), index="row")
        for row, (epoch, final) in enumerate(((2, 0), (4, 0), (4, 1))):
            curve.append(row=row, epoch=epoch, final=final, trace=10.0 + row)
        store["sharpness/cnn"].create_dataset("top_eigs", data=np.array([[3.0], [2.0], [2.0]]))
    return path


def _gain_line(axes) -> np.ndarray:
    return next(line.get_ydata() for ax in axes for line in ax.get_lines() if line.get_label() == RELAX_GAIN_LABEL)


def test_both_sharpness_figures_draw_the_one_relax_gain(sharpness_file, monkeypatch):
    # eFCN final minus the CNN's final accuracy (0.85), not the CNN's accuracy at t_w (0.6 at t_w = 2)
    with h5py.File(sharpness_file, "r") as store:
        gains = relax_gains(store)
        poster = _gain_line(sharpness_vs_gain(store).axes)
    np.testing.assert_array_equal(gains.t_w, [2, 4])
    np.testing.assert_allclose(gains.gain, [0.05, -0.05], atol=1e-12)
    drawn = []
    monkeypatch.setattr(sharpness_plot, "save_figure", lambda figure, stem: drawn.append(figure) or [])
    plot_sharpness(sharpness_file, sharpness_file)
    cli = _gain_line(drawn[0].axes)
    np.testing.assert_allclose(poster, [5.0, -5.0], atol=1e-9)
    np.testing.assert_allclose(cli, poster)
    plt.close("all")


def test_save_figure_writes_png_and_pdf_and_closes_the_figure(tmp_path):
    figure, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    paths = save_figure(figure, tmp_path / "line")
    assert paths == [tmp_path / "line.png", tmp_path / "line.pdf"]
    assert paths[0].read_bytes().startswith(b"\x89PNG") and paths[1].read_bytes().startswith(b"%PDF")
    assert not plt.fignum_exists(figure.number)


def test_report_takes_the_path_metrics_stored_with_the_curve(tmp_path):
    # --alpha-range -0.5 1.5: the curve's ends (0.5) are not the endpoints (0.9 and 0.88 measured at α = 0 and 1)
    path = tmp_path / "interpolation.h5"
    with open_store(path) as store:
        curve = CurveWriter(store, "interpolation/p/linear", columns=("alpha", "train_loss", "test_acc"), index="alpha")
        for alpha, acc in zip((-0.5, 0.0, 0.5, 1.0, 1.5), (0.5, 0.9, 0.93, 0.88, 0.5)):
            curve.append(alpha=alpha, train_loss=1.0, test_acc=acc)
        write_attrs(curve.group, {"barrier": 0.1, "peak_test_acc": 0.93, "peak_test_alpha": 0.5, "test_acc_gain": 0.03})
    report = write_report(path, tmp_path / "report.md", {}, {}, seconds=0).read_text()
    assert "| p | linear | 0.50 | 93.0 | +3.0 | 0.1 |" in report


def test_report_header_names_the_relax_result_configuration(tmp_path):
    # A merged reproduction: the root holds the merge's provenance, the relax result /runs its own config.
    path = tmp_path / "results.h5"
    with open_store(path) as store:
        write_attrs(store, {"command": "python -m runners.reproduce --out R", "created_by": "results.merge_stores"})
        write_attrs(store.require_group("runs"), {"config": {"data": "digits", "arch": "vanilla2d"}})
    report = write_report(path, tmp_path / "report.md", {}, {}, seconds=0).read_text()
    assert "- command: `python -m runners.reproduce --out R`" in report
    assert "- data: digits, architecture vanilla2d," in report
