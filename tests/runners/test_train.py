"""runners.train: one model, its snapshots, starting from a checkpoint, several names in one file, one-line errors."""

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from results import load_checkpoint, read_attrs, read_curve
from runners import train as train_cli


TINY = ["--data", "fake", "--n-train", "64", "--n-test", "32", "--channels", "2", "--batch-size", "16", "--lr", "0.01",
        "--epochs", "2", "--quiet"]


def test_train_cnn_then_an_efcn_from_its_snapshot(tmp_path, capsys):
    cnn_out, efcn_out = tmp_path / "cnn", tmp_path / "efcn"
    assert train_cli.main([*TINY, "--save-at", "0,1", "--out", str(cnn_out)]) == 0
    assert "cnn (cnn): test accuracy" in capsys.readouterr().out
    snapshot = cnn_out / "checkpoints/cnn/epoch_1.pt"
    model, meta = load_checkpoint(snapshot)
    assert meta["epoch"] == 1 and model.space == "cnn"
    assert train_cli.main([*TINY, "--space", "efcn", "--init", str(snapshot), "--name", "relaxed", "--out", str(efcn_out)]) == 0
    with h5py.File(cnn_out / "results.h5", "r") as store:
        cnn_curve = read_curve(store["runs/cnn/history"])
    with h5py.File(efcn_out / "results.h5", "r") as store:
        attrs = read_attrs(store["runs/relaxed"])
        curve = read_curve(store["runs/relaxed/history"])
    assert attrs["tool"] == "runners.train" and attrs["space"] == "efcn" and attrs["status"] == "done"
    assert not Path(attrs["init"]).is_absolute() and (efcn_out / attrs["init"]).resolve() == snapshot.resolve()
    assert curve["test_loss"][0] == pytest.approx(cnn_curve["test_loss"][1], abs=1e-5) and curve["delta"][0] == 0
    assert load_checkpoint(efcn_out / attrs["checkpoint"])[0].space == "efcn"


def test_an_efcn_made_by_hand_from_a_cnn_snapshot_is_in_the_figures(tmp_path):
    """train --init <out>/checkpoints/cnn/epoch_1.pt into the CNN's --out records t_w = 1: fig3 and fig4 draw the pair."""
    from runners._figures import make_figures

    out = tmp_path / "run"
    assert train_cli.main([*TINY, "--save-at", "1", "--out", str(out)]) == 0
    assert train_cli.main([*TINY, "--space", "efcn", "--init", str(out / "checkpoints/cnn/epoch_1.pt"), "--name", "by_hand1",
                           "--out", str(out)]) == 0
    with h5py.File(out / "results.h5", "r") as store:
        by_hand = read_attrs(store["runs/by_hand1"])
        # a snapshot outside the file's folder, or of no run in it, is just a starting checkpoint
        args = train_cli.build_parser().parse_args(["--space", "efcn", "--out", str(out), "--init", str(tmp_path / "epoch_1.pt")])
        assert train_cli.switched_from(args, store["runs"]) == {}
        args.init = str(out / "checkpoints/nocnn/epoch_1.pt")
        assert train_cli.switched_from(args, store["runs"]) == {}
    assert (by_hand["parent"], by_hand["parent_epoch"], by_hand["t_w"]) == ("cnn", 1, 1)
    written, skipped = make_figures(out / "results.h5", tmp_path / "figs", only=["fig3_dynamics", "fig4_delta"])
    assert set(written) == {"fig3_dynamics", "fig4_delta"}, skipped


@pytest.mark.parametrize("space", ["elcn", "fcn"])
def test_train_from_scratch_in_other_spaces(tmp_path, space):
    assert train_cli.main([*TINY, "--epochs", "1", "--space", space, "--out", str(tmp_path)]) == 0
    with h5py.File(tmp_path / "results.h5", "r") as store:
        assert read_attrs(store[f"runs/{space}"])["space"] == space


@pytest.mark.parametrize("extra,message", [
    (["--save-at", "5"], r"error: --save-at 5 lies beyond --epochs 2; use epochs in 0..2"),
    (["--space", "fcn", "--init", "x.pt"], r"error: --space fcn is a fresh random FCN; it cannot start from --init"),
    (["--init", "missing.pt"], r"error: checkpoint missing.pt does not exist"),
    (["--batch-size", "0"], r"error: batch_size must be a positive integer, got 0 \(check the --batch-size flag\)"),
    (["--arch-kwargs", '{"channels": "wide"}'], r"error: --model vanilla1d: architecture 'vanilla1d' does not accept arguments"),
    (["--arch", "resnet"], r"error: --model resnet: unknown architecture 'resnet'; expected one of"),
    (["--data", "digits"], r"error: --model vanilla2d with \{'channels': 2\} cannot take digits inputs of shape \(1, 8, 8\)"),
])
def test_bad_input_one_line_and_nothing_written(tmp_path, extra, message):
    with pytest.raises(SystemExit, match=message):
        train_cli.main([*TINY, "--out", str(tmp_path / "r"), *extra])
    assert not (tmp_path / "r").exists()


def test_corrupt_init_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 10)
    with pytest.raises(SystemExit, match=r"error: checkpoint .*bad.pt is corrupt or not a torch file \(\w+\); re-create it"):
        train_cli.main([*TINY, "--space", "efcn", "--init", str(bad), "--out", str(tmp_path / "r")])


def test_names_share_a_file_and_overwrite_replaces_only_its_own(tmp_path):
    out = tmp_path / "r"
    assert train_cli.main([*TINY, "--epochs", "1", "--save-at", "1", "--name", "a", "--out", str(out)]) == 0
    with h5py.File(out / "results.h5", "r") as store:
        before = read_curve(store["runs/a/history"])
    assert train_cli.main([*TINY, "--epochs", "1", "--save-at", "1", "--name", "b", "--out", str(out)]) == 0  # no flag needed
    with pytest.raises(SystemExit, match=r"^error: result 'runs/b' already exists in .*; pass --resume .* or --overwrite"):
        train_cli.main([*TINY, "--epochs", "1", "--name", "b", "--out", str(out)])
    (out / "checkpoints/b/stale.pt").write_bytes(b"x")
    assert train_cli.main([*TINY, "--epochs", "1", "--lr", "0.05", "--name", "b", "--overwrite", "--out", str(out)]) == 0
    with h5py.File(out / "results.h5", "r") as store:
        assert set(store["runs"]) == {"a", "b"}
        assert read_attrs(store["runs/a"])["status"] == "done" and read_attrs(store["runs/b"])["status"] == "done"
        after = read_curve(store["runs/a/history"])
        assert json.loads(read_attrs(store["runs/b"])["config"])["lr"] == 0.05
    for column, values in before.items():
        np.testing.assert_array_equal(after[column], values, err_msg=column)
    assert (out / "checkpoints/a/final.pt").is_file() and (out / "checkpoints/a/epoch_1.pt").is_file()
    assert (out / "checkpoints/b/final.pt").is_file() and not (out / "checkpoints/b/stale.pt").exists()


def test_resume_with_a_changed_option_is_refused_in_one_line(tmp_path):
    out = tmp_path / "r"
    assert train_cli.main([*TINY, "--epochs", "1", "--out", str(out)]) == 0
    with pytest.raises(SystemExit) as refused:
        train_cli.main([*TINY, "--epochs", "1", "--lr", "0.5", "--resume", "--out", str(out)])
    message = str(refused.value.code)
    assert "\n" not in message and re.fullmatch(r"error: --resume with other options than result 'runs/cnn' in .*results\.h5 "
                                                r"\(changed: lr\); use the same options or --overwrite", message)
    # Execution-only options may change on a resume: nothing is retrained, the run stays done.
    assert train_cli.main([*TINY, "--epochs", "1", "--resume", "--threads", "1", "--device", "cpu", "--out", str(out)]) == 0
