"""Device handling of the training runners: memory budget, mixed precision, peak memory, TF32 scoping."""

import argparse

import h5py
import numpy as np
import pytest
import torch

from results import read_attrs, read_curve
from runners import relax
from runners import train as train_cli
from runners._relax_cli import byte_size
from runners.training import _training_precision

torch.set_num_threads(1)

TINY = ["--data", "fake", "--n-train", "64", "--n-test", "32", "--channels", "2", "--batch-size", "16", "--lr", "0.01",
        "--epochs", "1", "--quiet"]


@pytest.mark.parametrize("space", ["efcn", "fcn"])
def test_max_bytes_refuses_the_embedding_before_anything_is_written(tmp_path, space):
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match=r"^error: the efcn of --arch vanilla1d on fake needs .* GiB of parameters, "
                                         r"more than --max-bytes .*raise --max-bytes"):
        train_cli.main([*TINY, "--space", space, "--max-bytes", "1KiB", "--out", str(out)])
    with pytest.raises(SystemExit, match="more than --max-bytes"):
        relax.main([*TINY, "--relax-epochs", "1", "--t-w", "0", "--tw1", "", "--max-bytes", "1000", "--out", str(out)])
    assert not out.exists()


def test_amp_trains_and_peak_memory_is_reported(tmp_path, capsys):
    assert train_cli.main([*TINY, "--amp", "--out", str(tmp_path / "amp")]) == 0
    assert relax.main([*TINY, "--relax-epochs", "1", "--t-w", "0", "--tw1", "", "--jobs", "1", "--max-bytes", "1GiB",
                       "--out", str(tmp_path / "relax")]) == 0
    assert "MiB" in capsys.readouterr().out
    with h5py.File(tmp_path / "amp/results.h5", "r") as store:
        attrs, curve = read_attrs(store["runs/cnn"]), read_curve(store["runs/cnn/history"])
        assert '"amp": true' in read_attrs(store)["config"]
    assert np.isfinite(curve["train_loss"]).all() and attrs["peak_memory_bytes"] > 2**20


def test_byte_sizes():
    assert [byte_size(t) for t in ("2GiB", "512MiB", "1.5e3", "3kb", "800")] == [2 * 2**30, 512 * 2**20, 1500, 3000, 800]
    with pytest.raises(argparse.ArgumentTypeError, match="expected a size like 2GiB, 512MiB or 800000000 .*got 'lots'"):
        byte_size("lots")


def test_tf32_is_scoped_to_training_steps():
    before = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with _training_precision(torch.device("cuda")):
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.benchmark
    assert (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_relax_on_gpu(tmp_path):
    assert relax.main([*TINY, "--relax-epochs", "1", "--t-w", "0", "--tw1", "", "--jobs", "1", "--device", "cuda",
                       "--amp", "--out", str(tmp_path / "gpu")]) == 0
    with h5py.File(tmp_path / "gpu/results.h5", "r") as store:
        assert read_attrs(store["runs/efcn_tw0"])["peak_memory_bytes"] > 0
