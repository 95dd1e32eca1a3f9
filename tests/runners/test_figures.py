"""Figures are drawn from HDF5 alone, and missing data are skipped with the command that makes them."""

from __future__ import annotations

import numpy as np
import pytest

from results import CurveWriter, open_store, write_attrs
from runners import figures
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
                write_attrs(curve.group, {"barrier": 0.25})
    return path


def test_every_figure_with_data_is_written_as_png_and_pdf(relax_file, tmp_path):
    written, skipped = figures.make_figures(relax_file, tmp_path / "figs")
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
    written, skipped = figures.make_figures(empty, tmp_path / "figs")
    assert written == {} and set(skipped) == set(figures.FIGURES)
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
    written, skipped = figures.make_figures(path, tmp_path / "figs")
    assert {"expandnets_training", "expandnets_gradient_confusion"} <= set(written)
    assert "--probe-points" in skipped["expandnets_surfaces"] and "runners.relax" in skipped["fig3_dynamics"]
