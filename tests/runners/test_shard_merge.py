"""A relax protocol split over a job array (--shard i/n) and merged equals the unsharded protocol."""

import json

import h5py
import numpy as np
import pytest

from results import load_checkpoint, read_attrs, read_curve
from runners import merge, relax


TINY = ["--data", "fake", "--n-train", "64", "--n-test", "32", "--channels", "2", "--batch-size", "32", "--lr", "0.01",
        "--epochs", "2", "--relax-epochs", "1", "--t-w", "0,2", "--tw1", "1", "--tw2", "1", "--jobs", "1", "--quiet"]


def _runs(path):
    with h5py.File(path, "r") as store:
        return ({name: read_curve(store["runs"][name]["history"]) for name in store["runs"]},
                {name: read_attrs(store["runs"][name]) for name in store["runs"]}, read_attrs(store["runs"]))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    relax.main([*TINY, "--out", str(root / "whole")])
    for index in range(2):
        relax.main([*TINY, "--shard", f"{index}/2", "--out", str(root / "array")])
    return root


def test_shards_split_the_branches(sweep):
    names = [set(_runs(sweep / f"array/shard-{i}-of-2/results.h5")[0]) for i in range(2)]
    assert names[0] & names[1] == {"cnn"}
    assert "efcn_tw1_1_tw2_1" in names[1] and "elcn_tw1" in names[1]  # a branch stays together


def test_merged_shards_equal_the_unsharded_sweep(sweep, capsys):
    shards = [str(sweep / f"array/shard-{i}-of-2/results.h5") for i in range(2)]
    assert merge.main([*shards, "--out", str(sweep / "array/results.h5")]) == 0
    assert "merged 6 runs from 2 shards" in capsys.readouterr().out
    whole, whole_attrs, whole_result = _runs(sweep / "whole/results.h5")
    merged, merged_attrs, merged_result = _runs(sweep / "array/results.h5")
    assert set(merged) == set(whole)
    for name, curve in whole.items():
        for column, values in curve.items():
            np.testing.assert_allclose(merged[name][column], values, rtol=1e-6, atol=1e-7, err_msg=f"{name}/{column}")
        assert merged_attrs[name]["final_test_acc"] == pytest.approx(whole_attrs[name]["final_test_acc"])
    assert json.loads(merged_result["config"]) == json.loads(whole_result["config"])  # the config lives on the result
    assert merged_result["tool"] == "runners.relax"
    model, meta = load_checkpoint(sweep / "array" / merged_attrs["efcn_tw1_1_tw2_1"]["checkpoint"])
    assert model.space == "efcn" and meta["tw2"] == 1


def test_merge_refuses_other_sweeps_and_existing_output(sweep, capsys):
    shard = str(sweep / "array/shard-0-of-2/results.h5")
    with pytest.raises(SystemExit, match=r"error: .*is a shard of another sweep .*config differs"):
        merge.main([shard, _other_sweep(sweep), "--out", str(sweep / "x.h5")])
    merge.main([shard, "--out", str(sweep / "once.h5")])
    with pytest.raises(SystemExit, match="already exists with merged /runs; pass --overwrite"):
        merge.main([shard, "--out", str(sweep / "once.h5")])
    with h5py.File(sweep / "once.h5", "a") as store:  # another tool's result in the same file
        store.require_group("interpolation/p").attrs["tool"] = "runners.interpolate"
    merge.main([shard, "--out", str(sweep / "once.h5"), "--overwrite"])
    with h5py.File(sweep / "once.h5", "r") as store:
        assert store["interpolation/p"].attrs["tool"] == "runners.interpolate" and "cnn" in store["runs"]
    with pytest.raises(SystemExit, match="does not exist; pass the results.h5 of every shard"):
        merge.main([str(sweep / "nope.h5"), "--out", str(sweep / "y.h5")])


def _other_sweep(sweep):
    other = sweep / "other.h5"
    with h5py.File(sweep / "array/shard-1-of-2/results.h5", "r") as src, h5py.File(other, "w") as dst:
        src.copy(src["runs"], dst, name="runs")
        dst["runs"].attrs["config"] = json.dumps({"lr": 1.0})
    return str(other)


def test_merge_refuses_shared_runs_that_differ(sweep):
    tampered = sweep / "tampered.h5"
    with h5py.File(sweep / "array/shard-1-of-2/results.h5", "r") as src, h5py.File(tampered, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        src.copy(src["runs"], dst, name="runs")
        dst["runs/cnn/history/train_loss"][0] += 1.0
    with pytest.raises(SystemExit, match=r"error: run cnn/history in .*differs .*train_loss: max \|diff\| 1"):
        merge.main([str(sweep / "array/shard-0-of-2/results.h5"), str(tampered), "--out", str(sweep / "z.h5")])


def test_bad_shard_flag_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        relax.main([*TINY, "--shard", "2/2", "--out", str(tmp_path)])
    assert "expected i/n with 0 <= i < n, e.g. 0/4, got '2/2'" in capsys.readouterr().err
