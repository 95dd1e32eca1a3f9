"""End to end: python -m runners.sharpness on a tiny run directory; resume, no overwrite, bad input."""

from __future__ import annotations

import gc
import json
import os
import weakref

import h5py
import numpy as np
import pytest
import torch

from embeddings import build_model, to_efcn
from results import CurveWriter, open_store, save_checkpoint, write_attrs
import runners.sharpness
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
        assert store["sharpness"].attrs["tool"] == "runners.sharpness" and "git_commit" in store["sharpness"].attrs
        cnn, efcn = store["sharpness/cnn"], store["sharpness/efcn_tw1"]
        assert json.loads(cnn.attrs["checkpoints"])[0] == os.path.relpath(run_dir / "checkpoints/cnn/epoch_0.pt", tmp_path)
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
    with pytest.raises(SystemExit, match="result 'sharpness' already exists in .*--resume .*--overwrite"):
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


def test_checkpoints_are_loaded_one_at_a_time_and_twins_probed_once(run_dir, tmp_path, monkeypatch):
    """Regression: every checkpoint used to sit on the device at once, and final.pt (the same weights
    as the last epoch's snapshot) was probed a second time."""
    loaded, alive_at_load = [], []
    real_load = runners.sharpness.load_checkpoint

    def tracking_load(path, **kwargs):
        gc.collect()
        alive_at_load.append(sum(ref() is not None for ref in loaded))
        model, meta = real_load(path, **kwargs)
        loaded.append(weakref.ref(model))
        return model, meta

    monkeypatch.setattr(runners.sharpness, "load_checkpoint", tracking_load)
    probes = []
    real_probe = runners.sharpness.probe_model
    monkeypatch.setattr(runners.sharpness, "probe_model", lambda *a, **k: probes.append(a[3].name) or real_probe(*a, **k))
    out = tmp_path / "twins.h5"
    main(["--run-dir", str(run_dir), "--runs", "cnn", "--out", str(out), *FAST])
    assert len(loaded) == 6 and max(alive_at_load) == 0  # three checks on the CPU, three loads to probe
    assert probes == ["epoch_0.pt", "epoch_1.pt"]  # final.pt holds epoch_1's weights
    with h5py.File(out, "r") as store:
        cnn = store["sharpness/cnn"]
        assert cnn["curve/final"][()].tolist() == [0.0, 0.0, 1.0] and cnn["curve/epoch"][()].tolist() == [0.0, 1.0, 2.0]
        np.testing.assert_array_equal(cnn["top_eigs"][2], cnn["top_eigs"][1])
        assert cnn["curve/trace"][2] == cnn["curve/trace"][1] and cnn["curve/seconds"][2] == 0.0


def test_sharpness_joins_a_file_holding_other_results(run_dir, tmp_path):
    out = tmp_path / "shared.h5"
    args = ["--run-dir", str(run_dir), "--runs", "efcn_tw1", *FAST]
    with open_store(out) as store:
        CurveWriter(store, "other/curve", columns=("x",), index="x").append(x=1.0)
    main([*args, "--out", str(out)])
    main([*args, "--out", str(out), "--overwrite"])
    with h5py.File(out, "r") as store:
        assert store["other/curve/x"][()].tolist() == [1.0] and store["sharpness/efcn_tw1/curve/row"].shape == (1,)
