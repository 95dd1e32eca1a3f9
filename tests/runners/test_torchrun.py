"""``torchrun`` on localhost (2 gloo ranks) runs the probing CLIs with rank 0 alone writing the same file."""

from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from embeddings import build_model
from results import read_curve, save_checkpoint
from results.recovery import GOOD_SUFFIX
from runners import sharpness
from runners.interpolate import main

FAKE = ["--data", "fake", "--n-train", "96", "--n-test", "32", "--batch-size", "16", "--quiet", "--device", "cpu"]


def _torchrun(module: str, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", module]
    done = subprocess.run([*launch, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.mark.slow  # two torch processes start under torchrun: ~20 s
def test_sharpness_under_torchrun_equals_one_process(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "a.pt", build_model("vanilla1d", channels=3))
    args = ["--ckpt", str(tmp_path / "a.pt"), "--k", "2", "--trace-probes", "6", "--basin-directions", "1", "--basin-max", "0.5",
            "--surface", "1d", "--surface-points", "3", *[flag for flag in FAKE if flag not in ("--n-test", "32")]]
    assert sharpness.main([*args, "--out", str(tmp_path / "one.h5")]) == 0
    _torchrun("runners.sharpness", [*args, "--out", str(tmp_path / "two.h5")])
    with h5py.File(tmp_path / "one.h5", "r") as one, h5py.File(tmp_path / "two.h5", "r") as two:
        (run,) = list(one["sharpness"])
        np.testing.assert_allclose(two[f"sharpness/{run}/top_eigs"][()], one[f"sharpness/{run}/top_eigs"][()], rtol=1e-4)
        first, second = read_curve(one[f"sharpness/{run}/curve"]), read_curve(two[f"sharpness/{run}/curve"])
        for column in ("train_loss", "trace", "basin_width", "lanczos_iterations"):
            np.testing.assert_allclose(second[column], first[column], rtol=1e-4, err_msg=column)
        # the surface once averaged about half the data under two ranks (sharded twice)
        np.testing.assert_allclose(two[f"sharpness/{run}/surface_0/loss"][()], one[f"sharpness/{run}/surface_0/loss"][()], rtol=1e-4)


@pytest.mark.slow  # two torch processes start under torchrun: ~20 s
def test_interpolate_under_torchrun_equals_one_process(tmp_path):
    torch.manual_seed(0)
    a, b = build_model("vanilla1d", channels=4), build_model("vanilla1d", channels=4)
    args = ["--ckpt-a", str(save_checkpoint(tmp_path / "a.pt", a)), "--ckpt-b", str(save_checkpoint(tmp_path / "b.pt", b)),
            "--methods", "linear,string,output", "--points", "5", "--string-steps", "4", *FAKE]
    assert main([*args, "--out", str(tmp_path / "one.h5")]) == 0
    done = _torchrun("runners.interpolate", [*args, "--out", str(tmp_path / "two.h5")])
    assert done.stdout.count("method") == 1  # one table: rank 1's prints are silenced
    with h5py.File(tmp_path / "one.h5", "r") as one, h5py.File(tmp_path / "two.h5", "r") as two:
        for method in ("linear", "string", "output"):
            first, second = read_curve(one[f"interpolation/a__b/{method}"]), read_curve(two[f"interpolation/a__b/{method}"])
            for column, values in first.items():
                np.testing.assert_allclose(second[column], values, rtol=1e-5, atol=1e-6, err_msg=f"{method}/{column}")
    # rank 1 writes nothing of its own: only the checkpoints, the two result files and what the writer keeps beside them
    written = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".") and not p.name.endswith(GOOD_SUFFIX))
    assert written == ["a.pt", "b.pt", "one.h5", "two.h5"]
