"""runners.sharpness --coordinates and the basin-width options: own vs eFCN coordinates, censoring, relative threshold."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from embeddings import build_model, to_efcn, to_elcn
from results import load_checkpoint, save_checkpoint
from runners._engine import probe_model
from runners.sharpness import build_parser, main

FAST = ["--data", "fake", "--n-train", "48", "--batch-size", "32", "--k", "2", "--trace-probes", "6",
        "--basin-directions", "1", "--basin-max", "0.5", "--quiet"]


def _ce_hessian_of_dense_weight(dense: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Hessian of the mean cross entropy of ``x @ W.T`` with respect to ``W`` (flattened), by torch.func."""
    def loss(flat: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(x @ flat.reshape(dense.shape).T, y)

    return torch.func.hessian(loss)(dense.reshape(-1))


def test_a_linear_conv_has_hessian_j_transpose_h_j_and_the_efcn_its_own():
    """A 1-layer linear conv (kernel 3, input length 5, 3 outputs = 3 classes), float64.

    The embedding is linear, ``W = J w`` with ``W[i, i + j] = w[j]``, so the CNN's Hessian is exactly
    ``J^T H_efcn J``: the same function and loss, a different top eigenvalue.
    """
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv1d(1, 1, 3, bias=False), nn.Flatten()).double()
    cnn.input_shape = (1, 5)
    x = torch.randn(40, 1, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    jacobian = torch.zeros(3 * 5, 3, dtype=torch.float64)  # d vec(W) / d w, by hand
    for i in range(3):
        for j in range(3):
            jacobian[i * 5 + i + j, j] = 1.0
    dense = (jacobian @ cnn[0].weight.detach().reshape(-1)).reshape(3, 5)
    h_efcn = _ce_hessian_of_dense_weight(dense, x.reshape(40, 5), y)
    h_cnn = jacobian.T @ h_efcn @ jacobian
    expected_cnn, expected_efcn = torch.linalg.eigvalsh(h_cnn).flip(0), torch.linalg.eigvalsh(h_efcn).flip(0)

    args = build_parser().parse_args(["--ckpt", "unused.pt", "--k", "2", "--tol", "1e-10", "--basin-directions", "1"])
    with h5py.File("unused.h5", "w", driver="core", backing_store=False) as scratch:
        row = probe_model(args, cnn, {}, Path("cnn.pt"), None, [(x, y)], scratch, 0)

    assert row["train_loss"] == pytest.approx(row["train_loss_efcn"], rel=1e-12)  # the same function
    np.testing.assert_allclose(row["top_eigs"], expected_cnn[:2].numpy(), rtol=1e-6)
    np.testing.assert_allclose(row["top_eigs_efcn"], expected_efcn[:2].numpy(), rtol=1e-6)
    assert row["top_eigs"][0] > 1.5 * row["top_eigs_efcn"][0]  # weight sharing adds up curvature: not comparable
    assert row["trace"] == pytest.approx(float(torch.trace(h_cnn)), rel=1e-6)  # hutch++ is exact at 3 dimensions


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpts")
    torch.manual_seed(0)
    cnn = build_model("vanilla1d", channels=2)
    save_checkpoint(out / "cnn.pt", cnn, epoch=1, run="cnn", seed=3, protocol_run="cnn")
    save_checkpoint(out / "efcn.pt", to_efcn(cnn), epoch=1, run="efcn_tw1", t_w=1)
    return out


def _curve(path, group="checkpoints"):
    with h5py.File(path, "r") as store:
        run = store[f"sharpness/{group}"]
        return {k: v[()] for k, v in run["curve"].items()} | {k: run[k][()] for k in ("top_eigs", "top_eigs_efcn")}, dict(run.attrs)


@pytest.mark.parametrize("coordinates", ["both", "own", "efcn"])
def test_coordinates_fill_the_columns_they_name(ckpts, tmp_path, coordinates):
    out = tmp_path / "coords.h5"
    main(["--ckpt", str(ckpts / "cnn.pt"), str(ckpts / "efcn.pt"), "--out", str(out), "--coordinates", coordinates, *FAST])
    curve, attrs = _curve(out)
    assert attrs["coordinates"] == coordinates and attrs["seed"] == 3 and attrs["protocol_run"] == "cnn"
    own_cnn, efcn_cnn = curve["top_eigs"][0], curve["top_eigs_efcn"][0]
    assert np.isfinite(own_cnn).all() == (coordinates != "efcn") and np.isfinite(efcn_cnn).all() == (coordinates != "own")
    # the eFCN checkpoint lives in the eFCN's coordinates whatever the flag
    np.testing.assert_array_equal(curve["top_eigs"][1], curve["top_eigs_efcn"][1])
    if coordinates == "both":
        assert curve["train_loss"][0] == pytest.approx(curve["train_loss_efcn"][0], rel=1e-5)
        # the embedded CNN is the eFCN checkpoint: the same point in the same coordinates
        np.testing.assert_allclose(efcn_cnn, curve["top_eigs_efcn"][1], rtol=1e-3)
        assert not np.allclose(own_cnn, efcn_cnn, rtol=0.05)


def test_basin_censoring_and_relative_threshold_end_to_end(ckpts, tmp_path):
    base = ["--ckpt", str(ckpts / "efcn.pt"), *FAST[:-5], "--basin-directions", "2", "--quiet"]
    capped = tmp_path / "capped.h5"
    main([*base, "--out", str(capped), "--basin-max", "1e-4"])  # too short a search to leave the basin
    curve, _ = _curve(capped)
    assert curve["basin_censored"][0] == 1.0 and curve["basin_width"][0] == pytest.approx(1e-4)

    widths = {}
    for mode, threshold in (("absolute", 0.05), ("relative", 0.05)):
        out = tmp_path / f"{mode}.h5"
        main([*base, "--out", str(out), "--basin-max", "5", "--basin-mode", mode, "--basin-threshold", str(threshold)])
        curve, _ = _curve(out)
        expected_rise = threshold * curve["train_loss"][0] if mode == "relative" else threshold
        assert curve["basin_rise"][0] == pytest.approx(expected_rise, rel=1e-12)
        assert curve["basin_censored"][0] == 0.0
        widths[mode] = curve["basin_width"][0]
    # the loss is about ln 10 > 1, so a 5% relative rise is a larger rise: a wider basin
    assert curve["train_loss"][0] > 1 and widths["relative"] > widths["absolute"]
    assert math.isfinite(widths["relative"])


def test_an_elcn_checkpoint_is_embedded_into_the_same_efcn_coordinates(ckpts, tmp_path):
    cnn, _ = load_checkpoint(ckpts / "cnn.pt")
    save_checkpoint(tmp_path / "elcn.pt", to_elcn(cnn), epoch=1, run="elcn_tw1", t_w=1)
    out = tmp_path / "elcn.h5"
    main(["--ckpt", str(tmp_path / "elcn.pt"), str(ckpts / "efcn.pt"), "--out", str(out), "--tol", "1e-6", *FAST])
    curve, attrs = _curve(out)
    assert attrs["space"] == "efcn"  # the last checkpoint's; the eLCN row was probed in both coordinates
    # to_efcn(eLCN) is the eFCN embedded from the same CNN: the same point in the same coordinates
    np.testing.assert_allclose(curve["top_eigs_efcn"][0], curve["top_eigs_efcn"][1], rtol=1e-3)
    assert curve["train_loss"][0] == pytest.approx(curve["train_loss_efcn"][0], rel=1e-5)
    assert not np.allclose(curve["top_eigs"][0], curve["top_eigs_efcn"][0], rtol=0.05)  # no weight sharing, yet not dense
