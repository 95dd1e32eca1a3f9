"""Results named after the runs: sharpness --run-dir takes runners.reproduce's folder (its relax stage) and says so,
sharpness --name labels a --ckpt list, interpolation groups are named after the checkpoints' runs (not final__final)."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest
import torch

from embeddings import build_model, to_efcn
from results import save_checkpoint
from runners.interpolate import main as interpolate_main
from runners.sharpness import main as sharpness_main

DATA = ["--data", "fake", "--n-train", "40"]
SHARP = [*DATA, "--k", "1", "--trace-probes", "3", "--basin-directions", "1", "--basin-max", "0.5", "--coordinates", "own", "--quiet"]


def _save(path: Path, efcn: bool = False) -> Path:
    torch.manual_seed(0)
    model = build_model("vanilla1d", channels=2)
    return save_checkpoint(path, to_efcn(model) if efcn else model)


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory) -> Path:
    """The layout of ``runners.reproduce --out DIR``: the protocol's runs in DIR/relax, ExpandNets' in DIR/expandnets."""
    folder = tmp_path_factory.mktemp("reproduced")
    _save(folder / "relax" / "checkpoints" / "cnn" / "final.pt")
    _save(folder / "expandnets" / "checkpoints" / "compact" / "final.pt")
    return folder


def _groups(path: Path, name: str) -> list[str]:
    with h5py.File(path, "r") as store:
        return sorted(store[name])


def test_sharpness_run_dir_takes_a_reproduce_folder_and_says_which_runs(reproduced, tmp_path, capsys):
    out = tmp_path / "sharp.h5"
    assert sharpness_main(["--run-dir", str(reproduced), *SHARP, "--out", str(out)]) == 0
    assert f"--run-dir {reproduced}: probing the runs of {reproduced / 'relax'}" in capsys.readouterr().out
    assert _groups(out, "sharpness") == ["cnn"]


def test_sharpness_run_dir_without_checkpoints_names_the_folders_that_have_some(tmp_path):
    for sub in ("first", "second"):
        _save(tmp_path / sub / "checkpoints" / "run" / "final.pt")
    with pytest.raises(SystemExit, match=rf"{tmp_path} has no checkpoints/ folder; its sub-folders first, second have some"):
        sharpness_main(["--run-dir", str(tmp_path), *SHARP, "--out", str(tmp_path / "s.h5")])
    with pytest.raises(SystemExit, match=r"has no checkpoints/ folder; pass the --out folder of runners.relax, runners.train or"):
        sharpness_main(["--run-dir", str(tmp_path / "first" / "checkpoints"), *SHARP, "--out", str(tmp_path / "s.h5")])


def test_sharpness_name_labels_a_checkpoint_list(tmp_path):
    checkpoint = _save(tmp_path / "models" / "mine.pt")
    out = tmp_path / "sharp.h5"
    assert sharpness_main(["--ckpt", str(checkpoint), "--name", "my_net", *SHARP, "--out", str(out)]) == 0
    assert _groups(out, "sharpness") == ["my_net"]
    with pytest.raises(SystemExit, match=r"--name 'a/b' contains '/'"):
        sharpness_main(["--ckpt", str(checkpoint), "--name", "a/b", *SHARP, "--out", str(tmp_path / "other.h5")])
    with pytest.raises(SystemExit, match=r"--name labels a --ckpt list; with --run-dir every run keeps its own name"):
        sharpness_main(["--run-dir", str(tmp_path), "--name", "x", *SHARP, "--out", str(tmp_path / "other.h5")])
    assert not (tmp_path / "other.h5").exists()


def test_interpolation_groups_are_named_after_the_runs(tmp_path):
    checkpoints = tmp_path / "relax" / "checkpoints"
    cnn, efcn = _save(checkpoints / "cnn" / "final.pt"), _save(checkpoints / "efcn_tw4" / "final.pt", efcn=True)
    snapshot = _save(checkpoints / "cnn" / "epoch_8.pt")
    out = tmp_path / "paths.h5"
    common = [*DATA, "--n-test", "16", "--methods", "linear", "--points", "3", "--quiet", "--out", str(out)]
    assert interpolate_main(["--ckpt-a", str(cnn), "--ckpt-b", str(efcn), *common]) == 0
    assert interpolate_main(["--ckpt-a", str(snapshot), "--ckpt-b", str(efcn), *common]) == 0
    assert _groups(out, "interpolation") == ["cnn__efcn_tw4", "cnn_epoch_8__efcn_tw4"]
