"""Device handling of the training runners: memory budget, mixed precision, peak memory, TF32 scoping."""

import argparse
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook

from embeddings import EmbeddedDense, build_model, estimate_memory
from results import read_attrs, read_curve
from runners import relax
from runners import train as train_cli
from runners._engine import byte_size
from runners._engine.loop import _training_precision


TINY = ["--data", "fake", "--n-train", "64", "--n-test", "32", "--channels", "2", "--batch-size", "16", "--lr", "0.01",
        "--epochs", "1", "--quiet"]


@pytest.mark.parametrize("space", ["efcn", "fcn"])
def test_max_bytes_refuses_the_embedding_before_anything_is_written(tmp_path, space):
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match=r"^error: the efcn of --model vanilla1d on fake needs .* GiB of parameters, "
                                         r"more than --max-bytes .*raise --max-bytes"):
        train_cli.main([*TINY, "--space", space, "--max-bytes", "1KiB", "--out", str(out)])
    with pytest.raises(SystemExit, match="more than --max-bytes"):
        relax.main([*TINY, "--relax-epochs", "1", "--t-w", "0", "--tw1", "", "--max-bytes", "1000", "--out", str(out)])
    assert not out.exists()


def _training_output_dtypes(run) -> dict[str, set[torch.dtype]]:
    """Output dtypes of the conv / dense layers in training mode (the steps; evaluations run in eval mode)."""
    seen: dict[str, set[torch.dtype]] = {}

    def record(module, args, output):
        if module.training and torch.is_grad_enabled() and isinstance(module, (nn.Conv1d, nn.Linear, EmbeddedDense)):
            seen.setdefault(type(module).__name__, set()).add(output.dtype)

    handle = register_module_forward_hook(record)
    try:
        run()
    finally:
        handle.remove()
    return seen


def test_amp_runs_the_training_steps_in_bfloat16(tmp_path):
    def train(*flags):
        return lambda: train_cli.main([*TINY, *flags, "--out", str(tmp_path / ("amp" if flags else "fp32"))])

    assert _training_output_dtypes(train()) == {"Conv1d": {torch.float32}, "Linear": {torch.float32}}
    assert _training_output_dtypes(train("--amp")) == {"Conv1d": {torch.bfloat16}, "Linear": {torch.bfloat16}}
    relaxed = _training_output_dtypes(lambda: relax.main([
        *TINY, "--amp", "--relax-epochs", "1", "--t-w", "0", "--tw1", "", "--jobs", "1", "--out", str(tmp_path / "relax")]))
    assert relaxed["EmbeddedDense"] == {torch.bfloat16} and relaxed["Conv1d"] == {torch.bfloat16}
    with h5py.File(tmp_path / "amp/results.h5", "r") as store:
        curve = read_curve(store["runs/cnn/history"])
    assert np.isfinite(curve["train_loss"]).all()


def test_peak_memory_grows_by_at_least_the_added_parameters(tmp_path):
    channels = {"small": 2, "large": 64}
    added = (estimate_memory(build_model("vanilla1d", channels=channels["large"]))
             - estimate_memory(build_model("vanilla1d", channels=channels["small"])))
    assert added > 16 * 2**20  # big enough to stand out of the noise of two processes' resident sets
    # One fresh process per run (side by side): the CPU peak is the process's maxrss, which only ever grows.
    runs = {name: subprocess.Popen([sys.executable, "-m", "runners.train", *TINY, "--space", "efcn", "--channels", str(c),
                                    "--out", str(tmp_path / name)], env={**os.environ, "OMP_NUM_THREADS": "1"})
            for name, c in channels.items()}
    assert all(run.wait() == 0 for run in runs.values())
    peak = {}
    for name in channels:
        with h5py.File(tmp_path / name / "results.h5", "r") as store:
            peak[name] = int(read_attrs(store["runs/efcn"])["peak_memory_bytes"])
    # Training holds weights, gradients and Adam's two moments: about 4x the parameter bytes.
    assert peak["large"] - peak["small"] >= added


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
