"""The one result writer: new names need no flag, resume continues one name, overwrite replaces one name."""

import json
import multiprocessing
import os

import h5py
import numpy as np
import pytest

from results import CurveWriter, ResultError, open_result, read_attrs, result_names


def _write(path, name, config=None, **flags):
    with open_result(path, name, tool="test", config=config or {"k": 1}, seed=3, argv=["test"], **flags) as result:
        CurveWriter(result.group, "curve", columns=("x", "y"), index="x").append(x=0.0, y=float(len(name)))
        return result.resumed


def test_new_names_are_added_without_a_flag_and_carry_their_own_provenance(tmp_path):
    path = tmp_path / "r.h5"
    _write(path, "interpolation/a", {"points": 3})
    _write(path, "interpolation/b", {"points": 5})
    with h5py.File(path, "r") as f:
        assert result_names(f) == ["interpolation/a", "interpolation/b"]
        a, b = read_attrs(f["interpolation/a"]), read_attrs(f["interpolation/b"])
        assert json.loads(a["config"]) == {"points": 3} and json.loads(b["config"]) == {"points": 5}
        assert a["tool"] == b["tool"] == "test" and a["seed"] == 3 and "git_commit" in a and "created_utc" in b
        assert f.attrs["created_by"] == "test"


def test_an_existing_name_without_a_flag_is_refused_and_left_intact(tmp_path):
    path = tmp_path / "r.h5"
    _write(path, "a")
    with pytest.raises(ResultError, match="already exists.*--resume.*--overwrite"):
        _write(path, "a")
    with h5py.File(path, "r") as f:
        assert f["a/curve/y"][()].tolist() == [1.0]


def test_overwrite_replaces_only_that_name(tmp_path):
    path = tmp_path / "r.h5"
    for name in ("runs/a", "runs/b", "sharpness"):
        _write(path, name)
    with open_result(path, "runs/b", tool="test", config={"k": 2}, overwrite=True) as result:
        assert len(result.group) == 0 and not result.resumed
    with h5py.File(path, "r") as f:
        assert result_names(f) == ["runs/a", "runs/b", "sharpness"]
        assert f["runs/a/curve/y"][()].tolist() == [6.0] and f["sharpness/curve/y"][()].tolist() == [9.0]
        assert "curve" not in f["runs/b"] and json.loads(f["runs/b"].attrs["config"]) == {"k": 2}


def test_resume_continues_a_name_and_refuses_another_configuration(tmp_path):
    path = tmp_path / "r.h5"
    _write(path, "a", {"lr": 0.1, "epochs": 3})
    assert _write(path, "a", {"epochs": 3, "lr": 0.1}, resume=True)
    with h5py.File(path, "r") as f:
        assert f["a/curve/x"].shape == (2,)  # the resumed writer continued the curve
    with pytest.raises(ResultError, match=r"other options.*changed: lr"):
        _write(path, "a", {"lr": 0.2, "epochs": 3}, resume=True)
    assert not _write(path, "new", resume=True)  # resuming a missing name starts it


def test_resume_by_another_tool_and_nested_names_are_refused(tmp_path):
    path = tmp_path / "r.h5"
    _write(path, "runs")
    with pytest.raises(ResultError, match="written by test, not other"):
        open_result(path, "runs", tool="other", config={"k": 1}, resume=True)
    with pytest.raises(ResultError, match="inside the result 'runs'"):
        _write(path, "runs/cnn")
    _write(tmp_path / "s.h5", "runs/cnn")
    with pytest.raises(ResultError, match="contain the result 'runs/cnn'"):
        _write(tmp_path / "s.h5", "runs", overwrite=True)
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert "curve" in f["runs/cnn"]


@pytest.mark.parametrize("name", ["../victim", "/abs", "a//b", "a/./b", "", "x y", "a/.."])
def test_unsafe_names_are_refused_before_the_file_is_created(tmp_path, name):
    with pytest.raises(ResultError, match="choose another --name"):
        _write(tmp_path / "r.h5", name)
    assert not (tmp_path / "r.h5").exists()


def test_both_flags_are_refused(tmp_path):
    with pytest.raises(ResultError, match="contradict"):
        _write(tmp_path / "r.h5", "a", resume=True, overwrite=True)


def test_stored_paths_are_relative_to_the_files_folder(tmp_path):
    (tmp_path / "out" / "ckpt").mkdir(parents=True)
    target = tmp_path / "out" / "ckpt" / "final.pt"
    target.write_bytes(b"x")
    with open_result(tmp_path / "out" / "r.h5", "a", tool="t", config={}) as result:
        stored = result.relative(target)
        assert stored == os.path.join("ckpt", "final.pt")
        assert result.resolve(stored).read_bytes() == b"x"
    moved = tmp_path / "moved"
    (tmp_path / "out").rename(moved)
    with open_result(moved / "r.h5", "b", tool="t", config={}) as result:
        assert result.resolve(stored).read_bytes() == b"x"  # the folder moved as a whole: paths still resolve


def test_unreadable_file_is_refused_with_one_line_and_kept(tmp_path):
    path = tmp_path / "r.h5"
    path.write_bytes(b"not hdf5 at all")
    with pytest.raises(ResultError, match="not a readable HDF5 file"):
        _write(path, "a")
    assert path.read_bytes() == b"not hdf5 at all"


def _hold_open(path, ready, release):
    with h5py.File(path, "a") as f:
        f.attrs["holder"] = 1
        f.flush()
        ready.set()
        release.wait(30)


def test_a_file_in_use_by_another_process_is_refused_before_anything_is_deleted(tmp_path):
    path = tmp_path / "r.h5"
    _write(path, "a")
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_open, args=(str(path), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(ResultError, match="open in another process"):
            _write(path, "a", overwrite=True)
    finally:
        release.set()
        holder.join(30)
    with h5py.File(path, "r") as f:
        assert np.array_equal(f["a/curve/y"][()], [1.0])
