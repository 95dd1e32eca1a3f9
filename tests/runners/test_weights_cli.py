"""``python -m runners.weights``: /weights is a result of its own, added beside the relax result."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from results import CurveWriter, open_result
from runners.weights import main


def test_weights_join_the_relax_file_and_follow_the_result_rule(tmp_path):
    with open_result(tmp_path / "results.h5", "runs", tool="runners.relax", config={"epochs": 1}) as result:
        CurveWriter(result.group, "cnn/history", columns=("epoch", "test_acc"), index="epoch").append(epoch=0, test_acc=0.5)
    assert main(["--run-dir", str(tmp_path)]) == 0  # a new name: no flag
    with pytest.raises(SystemExit, match="result 'weights' already exists .*--resume .*--overwrite"):
        main(["--run-dir", str(tmp_path)])
    assert main(["--run-dir", str(tmp_path), "--overwrite"]) == 0
    with h5py.File(tmp_path / "results.h5", "r") as store:
        assert store["weights"].attrs["tool"] == "runners.weights" and store["runs"].attrs["tool"] == "runners.relax"
        assert np.array_equal(store["runs/cnn/history/test_acc"][()], [0.5])
        # Fig. 1: a 3x3 filter on a 4x4 input gives 4 output positions, each seeing 9 of the 16 inputs.
        index = store["weights/fig1/filter_index"][()]
        assert index.shape == (4, 16) and ((index >= 0).sum(axis=1) == 9).all()


def test_missing_relax_file_gives_one_line(tmp_path):
    with pytest.raises(SystemExit, match="does not exist; run python -m runners.relax"):
        main(["--run-dir", str(tmp_path)])
