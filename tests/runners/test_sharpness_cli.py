"""End to end: python -m runners.sharpness on a tiny run directory; resume, no overwrite, bad input."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from embeddings import build_model, to_efcn
from results import CurveWriter, open_store, save_checkpoint, write_attrs
from runners.sharpness import main

FAST = ["--data", "fake", "--n-train", "48", "--batch-size", "32", "--k", "2", "--trace-probes", "6",
        "--basin-directions", "1", "--basin-max", "0.5", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A relax-like folder: CNN snapshots at epochs 0 and 1 and its final model, an eFCN from epoch 1, results.h5."""
    out = tmp_path_factory.mktemp("relax")
    torch.manual_seed(0)
    cnn = build_model("vanilla1d", channels=2)
    save_checkpoint(out / "checkpoints/cnn/epoch_0.pt", cnn, epoch=0, run="cnn")
    with torch.no_grad():
        for p in cnn.parameters():
            p.mul_(1.5)
    save_checkpoint(out / "checkpoints/cnn/epoch_1.pt", cnn, epoch=1, run="cnn")
    save_checkpoint(out / "checkpoints/cnn/final.pt", cnn, epoch=2, run="cnn")
    save_checkpoint(out / "checkpoints/efcn_tw1/final.pt", to_efcn(cnn), epoch=1, run="efcn_tw1", t_w=1)
    with open_store(out / "results.h5") as store:
        history = CurveWriter(store, "runs/cnn/history", columns=("epoch", "test_acc"), index="epoch")
        for epoch, acc in enumerate((0.1, 0.5, 0.6)):
            history.append(epoch=epoch, test_acc=acc)
        write_attrs(store.require_group("runs/efcn_tw1"), {"t_w": 1, "final_test_acc": 0.55})
    return out


def test_probes_every_checkpoint_into_hdf5_and_plots(run_dir, tmp_path, capsys):
    out = tmp_path / "sharpness.h5"
    assert main(["--run-dir", str(run_dir), "--out", str(out), "--plot", *FAST]) == 0
    printed = capsys.readouterr().out
    assert "top eig" in printed and "figure:" in printed
    with h5py.File(out, "r") as store:
        assert store.attrs["tool"] == "runners.sharpness"
        cnn, efcn = store["sharpness/cnn"], store["sharpness/efcn_tw1"]
        assert cnn["curve/epoch"][()].tolist() == [0.0, 1.0, 2.0] and cnn["curve/final"][()].tolist() == [0.0, 0.0, 1.0]
        assert cnn["top_eigs"].shape == (3, 2) and np.all(np.diff(cnn["top_eigs"][()], axis=1) <= 0)
        assert efcn["curve/t_w"][()].tolist() == [1.0] and efcn.attrs["space"] == "efcn"
        # The eFCN was embedded from the CNN at epoch 1: the same function, so the same loss.
        assert efcn["curve/train_loss"][0] == pytest.approx(cnn["curve/train_loss"][1], rel=1e-5)
        assert np.isnan(cnn["curve/eps_sharpness"][()]).all() and "density_0" not in cnn
    assert (tmp_path / "sharpness_sharpness.png").is_file() and not (tmp_path / "sharpness_surfaces.png").exists()


def test_optional_density_surface_and_epsilon_sharpness(run_dir, tmp_path):
    out = tmp_path / "extras.h5"
    main(["--ckpt", str(run_dir / "checkpoints/efcn_tw1/final.pt"), "--out", str(out), "--density", "--surface", "2d",
          "--surface-points", "3", "--epsilon", "1e-3", "--subspace", "offlocal", "--plot", *FAST])
    with h5py.File(out, "r") as store:
        group = store["sharpness/checkpoints"]
        assert group.attrs["subspace"] == "offlocal" and np.isfinite(group["curve/eps_sharpness"][0])
        assert group["surface_0/loss"].shape == (3, 3) and group["density_0/grid"].shape == group["density_0/density"].shape
    assert (tmp_path / "extras_surfaces.pdf").is_file()


def test_cnn_subspace_of_the_efcn_gives_the_cnn_spectrum(run_dir, tmp_path):
    out = tmp_path / "cnn_subspace.h5"
    ckpts = [str(run_dir / "checkpoints/cnn/epoch_1.pt"), str(run_dir / "checkpoints/efcn_tw1/final.pt")]
    main(["--ckpt", *ckpts, "--out", str(out), "--subspace", "cnn", "--tol", "1e-8", *FAST])
    with h5py.File(out, "r") as store:
        eigs = store["sharpness/checkpoints/top_eigs"][()]
    assert np.allclose(eigs[0], eigs[1], rtol=1e-4)


def test_resume_continues_and_existing_files_are_never_overwritten(run_dir, tmp_path):
    out = tmp_path / "resume.h5"
    args = ["--run-dir", str(run_dir), "--runs", "cnn", "--out", str(out), *FAST]
    main(args)
    with h5py.File(out, "a") as store:  # as if killed after the first checkpoint
        for name in store["sharpness/cnn/curve"]:
            store[f"sharpness/cnn/curve/{name}"].resize((1,))
        before = store["sharpness/cnn/curve/trace"][0]
    with pytest.raises(SystemExit, match="already exists; pass --overwrite to replace it or --resume to continue it"):
        main(args)
    main([*args, "--resume"])
    with h5py.File(out, "r") as store:
        assert store["sharpness/cnn/curve/row"][()].tolist() == [0.0, 1.0, 2.0]
        assert store["sharpness/cnn/top_eigs"].shape == (3, 2) and store["sharpness/cnn/curve/trace"][0] == before
    with pytest.raises(SystemExit, match="--resume with other options"):
        main([*args, "--resume", "--k", "3"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--k", "0"], "--k must be >= 1, got 0"),
        (["--tol", "-1"], "--tol must be a positive number, got -1.0"),
        (["--runs", "nope"], r"--runs names \['nope'\] not found"),
        (["--subspace", "offlocal", "--runs", "efcn_tw1", "--data", "digits"], "has inputs of shape"),
    ],
)
def test_bad_input_gives_one_line(run_dir, tmp_path, extra, message):
    out = tmp_path / "bad.h5"
    with pytest.raises(SystemExit, match=message):
        main(["--run-dir", str(run_dir), "--out", str(out), *FAST, *extra])
    assert not out.exists()


def test_missing_inputs_give_one_line(tmp_path):
    with pytest.raises(SystemExit, match="has no checkpoints/ folder"):
        main(["--run-dir", str(tmp_path), "--out", str(tmp_path / "x.h5"), *FAST])
    with pytest.raises(SystemExit, match="checkpoint .*nope.pt does not exist"):
        main(["--ckpt", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "x.h5"), *FAST])
