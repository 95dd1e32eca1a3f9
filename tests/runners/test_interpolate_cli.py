"""``python -m runners.interpolate``: round trip on tiny checkpoints, resume, no overwrite, bad input."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import torch

from embeddings import build_model, to_efcn
from landscape import evaluate
from results import CurveWriter, save_checkpoint
from runners._engine import load_data
from runners.interpolate import main

FAKE = ["--data", "fake", "--n-train", "64", "--n-test", "32", "--batch-size", "32", "--quiet"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    cnn = build_model("vanilla1d", channels=4)
    efcn = to_efcn(cnn)
    with torch.no_grad():
        for p in efcn.parameters():
            p.add_(0.05 * torch.randn(p.shape))
    other = build_model("vanilla1d", channels=6)
    return {
        "cnn": save_checkpoint(folder / "cnn.pt", cnn), "efcn": save_checkpoint(folder / "efcn.pt", efcn),
        "other": save_checkpoint(folder / "other.pt", other), "models": (cnn, efcn),
    }


def _args(checkpoints, out, *extra: str) -> list[str]:
    return ["--ckpt-a", str(checkpoints["cnn"]), "--ckpt-b", str(checkpoints["efcn"]), "--out", str(out), *FAKE, *extra]


def test_round_trip_writes_every_method_metrics_trajectory_and_figure(checkpoints, tmp_path, capsys):
    out = tmp_path / "paths.h5"
    assert main(_args(checkpoints, out, "--points", "5", "--string-steps", "3", "--record-every", "2", "--plot")) == 0
    printed = capsys.readouterr().out
    assert "A cnn" in printed and "B efcn" in printed and "common space efcn" in printed
    assert all(line.split()[0] in printed for line in ("linear", "string", "output"))
    data = load_data("fake", n_train=64, n_test=32)
    cnn, efcn = checkpoints["models"]
    with h5py.File(out, "r") as store:
        group = store["interpolation/cnn__efcn"]
        assert group.attrs["tool"] == "runners.interpolate" and "git_commit" in group.attrs and "peak_memory_bytes" in group.attrs
        assert group.attrs["ckpt_a"] == os.path.relpath(checkpoints["cnn"], tmp_path)  # relative to the file's folder
        assert set(group) == {"linear", "string", "output", "string_trajectory"}
        for method in ("linear", "string", "output"):
            curve = group[method]
            assert curve.attrs["index"] == "alpha"
            assert curve["alpha"][()].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
            assert curve["train_loss"][0] == pytest.approx(evaluate(cnn, None, data.batches("train", 32)).loss, abs=1e-5)
            assert curve["test_acc"][-1] == pytest.approx(evaluate(efcn, None, data.batches("test", 32)).accuracy)
            assert {"barrier", "peak_test_alpha", "test_acc_gain", "length"} <= set(curve.attrs)
        assert {"kl_a", "disagree_b"} <= set(group["output"])
        trajectory = group["string_trajectory"]
        assert trajectory["step"][()].tolist() == [0.0, 2.0] and "point_4" in trajectory
    assert (tmp_path / "paths_cnn__efcn.png").stat().st_size > 0 and (tmp_path / "paths_cnn__efcn.pdf").exists()


def test_resume_continues_a_killed_curve(checkpoints, tmp_path):
    full, killed = tmp_path / "full.h5", tmp_path / "killed.h5"
    main(_args(checkpoints, full, "--methods", "linear", "--points", "6"))
    main(_args(checkpoints, killed, "--methods", "linear", "--points", "6"))
    with h5py.File(killed, "a") as store:  # what a kill after the second point leaves behind
        curve = store["interpolation/cnn__efcn/linear"]
        CurveWriter(curve.parent, "linear", columns=tuple(curve), index="alpha").truncate(2)
        del curve.attrs["barrier"]
    main(_args(checkpoints, killed, "--methods", "linear", "--points", "6", "--resume"))
    with h5py.File(full, "r") as a, h5py.File(killed, "r") as b:
        for column in ("alpha", "train_loss", "test_acc"):
            np.testing.assert_allclose(b[f"interpolation/cnn__efcn/linear/{column}"][()], a[f"interpolation/cnn__efcn/linear/{column}"][()], atol=1e-6)
        assert b["interpolation/cnn__efcn/linear"].attrs["barrier"] == pytest.approx(a["interpolation/cnn__efcn/linear"].attrs["barrier"], abs=1e-6)


def test_existing_results_are_not_overwritten(checkpoints, tmp_path):
    out = tmp_path / "paths.h5"
    main(_args(checkpoints, out, "--methods", "output", "--points", "3"))
    before = out.read_bytes()
    with pytest.raises(SystemExit, match=r"result 'interpolation/cnn__efcn' already exists in .*--resume .*--overwrite"):
        main(_args(checkpoints, out, "--methods", "output", "--points", "3"))
    assert out.read_bytes() == before
    main(_args(checkpoints, out, "--methods", "output", "--points", "4", "--overwrite"))
    with h5py.File(out, "r") as store:
        assert len(store["interpolation/cnn__efcn/output/alpha"]) == 4


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--stiffness", "-1"], r"stiffness k must be a finite number >= 0 .* got -1.0 \(check the string flags"),
        (["--alpha-range=-0.5,1.5"], r"--alpha-range -0.5,1.5 leaves \[0, 1\], where string and output paths do not exist"),
        (["--points", "1"], r"--points must be >= 2"),
        (["--data", "digits"], r"--data digits has inputs of shape \(1, 8, 8\) but the checkpoints expect \(1, 40\)"),
    ],
)
def test_bad_flags_fail_in_one_line_and_write_nothing(checkpoints, tmp_path, extra, message):
    out = tmp_path / "paths.h5"
    with pytest.raises(SystemExit, match=message):
        main(_args(checkpoints, out, *extra))
    assert not out.exists()


def test_missing_checkpoint_and_unrelated_architectures(checkpoints, tmp_path):
    out = tmp_path / "paths.h5"
    with pytest.raises(SystemExit, match=r"checkpoint .*nowhere.pt does not exist"):
        main(["--ckpt-a", str(tmp_path / "nowhere.pt"), "--ckpt-b", str(checkpoints["efcn"]), "--out", str(out), *FAKE])
    with pytest.raises(SystemExit, match=r"cannot interpolate between unrelated architectures"):
        main(["--ckpt-a", str(checkpoints["cnn"]), "--ckpt-b", str(checkpoints["other"]), "--out", str(out), *FAKE])
    assert not out.exists()


def test_overwrite_of_one_name_keeps_the_other_paths_of_the_file(checkpoints, tmp_path):
    """Regression: ``--overwrite --name B`` used to delete every other group of the file."""
    out = tmp_path / "paths.h5"
    main(_args(checkpoints, out, "--methods", "linear", "--points", "3", "--name", "A"))
    main(_args(checkpoints, out, "--methods", "linear", "--points", "3", "--name", "B"))  # a new name needs no flag
    with h5py.File(out, "r") as store:
        kept = store["interpolation/A/linear/train_loss"][()]
    main(_args(checkpoints, out, "--methods", "linear", "--points", "4", "--name", "B", "--overwrite"))
    with h5py.File(out, "r") as store:
        np.testing.assert_array_equal(store["interpolation/A/linear/train_loss"][()], kept)
        assert len(store["interpolation/B/linear/alpha"]) == 4


def test_resume_adds_a_method_but_refuses_other_options(checkpoints, tmp_path):
    out = tmp_path / "paths.h5"
    main(_args(checkpoints, out, "--methods", "linear", "--points", "3"))
    main(_args(checkpoints, out, "--methods", "linear,output", "--points", "3", "--resume"))
    with h5py.File(out, "r") as store:
        assert {"linear", "output"} <= set(store["interpolation/cnn__efcn"])
    with pytest.raises(SystemExit, match=r"--resume with other options .*changed: batch_size"):
        main(_args(checkpoints, out, "--methods", "linear", "--points", "3", "--resume", "--batch-size", "16"))


@pytest.mark.parametrize("name", ["../escape", "a/../b", "with space"])
def test_unsafe_names_are_refused_before_anything_is_written(checkpoints, tmp_path, name):
    with pytest.raises(SystemExit, match="choose another --name"):
        main(_args(checkpoints, tmp_path / "paths.h5", "--name", name))
    assert not (tmp_path / "paths.h5").exists()


def test_the_cnn_endpoint_is_embedded_once_and_path_metrics_computed_once(checkpoints, tmp_path, monkeypatch):
    """Regression: the CLI embedded the CNN to validate, threw it away, and interpolate embedded it again per method;
    the path metrics of a fresh curve were computed a second time from the file."""
    import embeddings
    import runners.interpolate

    embedded, recomputed = [], []
    real_to_efcn = embeddings.to_efcn
    monkeypatch.setattr(embeddings, "to_efcn", lambda *a, **k: embedded.append(1) or real_to_efcn(*a, **k))
    monkeypatch.setattr(runners.interpolate, "path_metrics", lambda *a, **k: recomputed.append(1))
    main(_args(checkpoints, tmp_path / "paths.h5", "--points", "3", "--string-steps", "1"))
    # One embedding rebuilds the eFCN checkpoint (load_checkpoint embeds its CNN skeleton), one moves the
    # CNN endpoint into eFCN space; before, the CNN was embedded once more for every method (5 in all).
    assert len(embedded) == 2 and not recomputed
    with h5py.File(tmp_path / "paths.h5", "r") as store:
        assert {m: store[f"interpolation/cnn__efcn/{m}"].attrs["space_a"] for m in ("linear", "string", "output")} == {
            "linear": "cnn", "string": "cnn", "output": "cnn"}


def test_the_table_prints_a_rounding_residue_below_zero_as_zero():
    """A convex path a few ulps under its chord (the output method's) reads 0.0000 and +0.0000, not -0.0000."""
    from runners.interpolate import _table

    row = {"space_a": "cnn", "space_b": "efcn", "space_common": "efcn", "train_a_loss": 1.0, "test_a_acc": 0.5,
           "train_b_loss": 0.5, "test_b_acc": 0.6, "barrier": -3e-9, "barrier_alpha": 1.0, "peak_test_acc": 0.6,
           "peak_test_alpha": 1.0, "test_acc_gain": -2e-9, "length": 1.5}
    line = _table("p", {"output": row, "linear": {**row, "barrier": -0.25, "test_acc_gain": -0.1}}).splitlines()
    assert line[2].split()[1] == "0.0000" and line[2].split()[5] == "+0.0000" and "-0.0000" not in line[2]
    assert line[3].split()[1] == "-0.2500" and line[3].split()[5] == "-0.1000"  # a real negative keeps its sign
