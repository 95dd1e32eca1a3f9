"""CI runs the own-model walkthrough (examples/own_model) end to end and checks what its README claims."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SWITCH = 2  # examples.own_model.walkthrough.SWITCH: the CNN epoch the eFCN is embedded from


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory) -> Path:
    """The walkthrough's output folder, run as the README says (from the repository root), at its smallest."""
    out = tmp_path_factory.mktemp("own_model") / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "examples.own_model.walkthrough", "--out", str(out), "--quiet",
                           "--epochs", "4", "--relax-epochs", "2", "--n-train", "256", "--n-test", "128", "--points", "5"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


pytestmark = pytest.mark.slow  # one walkthrough for the module, ~40 s on 2 loaded cores


def test_the_efcn_is_the_cnn_at_the_switch(walkthrough):
    with h5py.File(walkthrough / "train" / "results.h5", "r") as store:
        cnn, efcn = store["runs/cnn/history"], store["runs/efcn/history"]
        at_switch = list(cnn["epoch"][()]).index(SWITCH)
        assert efcn["delta"][0] == 0.0
        # the eFCN's first evaluation is the CNN snapshot's: the same function on the same test set
        assert efcn["test_loss"][0] == pytest.approx(cnn["test_loss"][at_switch], rel=1e-5)
        assert efcn["test_acc"][0] == cnn["test_acc"][at_switch]
    with h5py.File(walkthrough / "relax" / "results.h5", "r") as store:
        assert store[f"runs/efcn_tw{SWITCH}/history/delta"][0] == 0.0
    api = json.loads((walkthrough / "api.json").read_text())
    assert api["switch_delta"] == 0.0
    assert api["switch_max_abs_diff"] < 1e-10 and api["embed_max_abs_diff"] < 1e-10


def test_checkpoints_record_the_import_path(walkthrough):
    stored = torch.load(walkthrough / "train" / "checkpoints" / "cnn" / "final.pt", weights_only=True)
    assert stored["arch"] == "examples.own_model.mynet:factory"
    assert stored["arch_kwargs"]["width"] == 8 and tuple(stored["input_shape"]) == (1, 32)


def test_three_interpolation_methods_and_the_api_curve(walkthrough):
    with h5py.File(walkthrough / "relax" / "results.h5", "r") as store:
        paths = store[f"interpolation/cnn_efcn_tw{SWITCH}"]
        assert {"linear", "string", "output"} <= set(paths)
        for method in ("linear", "string", "output"):
            assert len(paths[f"{method}/alpha"]) == 5 and np.isfinite(paths[f"{method}/train_loss"][()]).all()
        linear = paths["linear/train_loss"][()]
    # landscape.interpolate from Python traces the curve runners.interpolate stored for the same pair
    api = json.loads((walkthrough / "api.json").read_text())
    np.testing.assert_allclose(api["linear_train_loss"], linear, rtol=1e-4)
    assert len(api["top_eigenvalues_cnn"]) == 2 and api["top_eigenvalues_cnn"][0] > 0


def test_a_sharpness_row_for_every_checkpoint(walkthrough):
    checkpoints = walkthrough / "relax" / "checkpoints"
    with h5py.File(walkthrough / "relax" / "results.h5", "r") as store:
        probed = {run: len(store[f"sharpness/{run}/curve/row"]) for run in store["sharpness"]}
        for run in probed:
            assert np.isfinite(store[f"sharpness/{run}/top_eigs"][()]).all()
    assert probed == {run.name: len(list(run.glob("*.pt"))) for run in checkpoints.iterdir()}
    assert {"cnn", "fcn", f"efcn_tw{SWITCH}"} <= set(probed)


def test_figures_are_drawn(walkthrough):
    for name in ("fig3_dynamics", "fig4_delta", "fig6_interpolation", "poster_sharpness"):
        assert (walkthrough / "figures" / f"{name}.png").stat().st_size > 0
