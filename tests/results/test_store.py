"""HDF5 store: no accidental overwrite, append-and-flush curves, resume, attributes."""

import math
import subprocess
import sys

import h5py
import numpy as np
import pytest

from results import CurveWriter, open_store, provenance, read_attrs, read_curve, write_attrs


def test_refuses_existing_file_without_overwrite_or_resume(tmp_path):
    path = tmp_path / "r.h5"
    with open_store(path) as store:
        store.attrs["x"] = 1
    with pytest.raises(FileExistsError, match=r"already exists; pass overwrite=True \(--overwrite\)"):
        open_store(path)
    with open_store(path, resume=True) as store:
        assert store.attrs["x"] == 1
    with open_store(path, overwrite=True) as store:
        assert "x" not in store.attrs
    with pytest.raises(ValueError, match="contradict"):
        open_store(path, overwrite=True, resume=True)


def test_curve_appends_and_resumes(tmp_path):
    path = tmp_path / "r.h5"
    with open_store(path) as store:
        curve = CurveWriter(store, "runs/a/history", columns=("epoch", "loss"), index="epoch")
        for epoch in range(3):
            curve.append(epoch=epoch, loss=1.0 / (epoch + 1))
    with open_store(path, resume=True) as store:
        curve = CurveWriter(store, "runs/a/history", columns=("epoch", "loss"), index="epoch")
        assert len(curve) == 3
        curve.truncate(2)
        curve.append(epoch=2, loss=float("nan"))
        data = curve.read()
    assert data["epoch"].tolist() == [0, 1, 2]
    assert data["loss"][1] == 0.5 and math.isnan(data["loss"][2])
    with h5py.File(path, "r") as store:
        assert store["runs/a/history"].attrs["index"] == "epoch"
        assert read_curve(store["runs/a/history"])["loss"].dtype == np.float64


def test_curve_rejects_bad_rows_and_columns(tmp_path):
    with open_store(tmp_path / "r.h5") as store:
        with pytest.raises(ValueError, match="the index 'step' must be one of the columns"):
            CurveWriter(store, "c", columns=("epoch",), index="step")
        curve = CurveWriter(store, "c", columns=("epoch", "loss"), index="epoch")
        with pytest.raises(ValueError, match=r"missing \['loss'\], unexpected \['acc'\]"):
            curve.append(epoch=0, acc=1.0)
        with pytest.raises(TypeError, match="column 'loss' takes numbers"):
            curve.append(epoch=0, loss="high")
        with pytest.raises(ValueError, match="holds columns"):
            CurveWriter(store, "c", columns=("epoch", "acc"), index="epoch")
        with pytest.raises(ValueError, match="can be cut to 0..0 points"):
            curve.truncate(5)


def test_points_survive_a_killed_writer(tmp_path):
    """Append-and-flush: a process killed without closing the file keeps every appended point."""
    path = tmp_path / "r.h5"
    script = (
        "import os; from results import open_store, CurveWriter\n"
        f"store = open_store({str(path)!r})\n"
        "curve = CurveWriter(store, 'h', columns=('epoch',), index='epoch')\n"
        "for e in range(4): curve.append(epoch=e)\n"
        "os._exit(1)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=False)
    with h5py.File(path, "r") as store:
        assert store["h/epoch"][()].tolist() == [0, 1, 2, 3]


def test_attrs_round_trip_and_provenance(tmp_path):
    with open_store(tmp_path / "r.h5") as store:
        write_attrs(store, {"a": 1, "b": 0.5, "c": "x", "d": [1, 2], "e": {"k": [1, "v"]}, "f": True, "g": None})
        write_attrs(store, provenance(seed=3, argv=["prog", "--flag"]))
        attrs = read_attrs(store)
    assert attrs["a"] == 1 and attrs["b"] == 0.5 and attrs["c"] == "x" and attrs["d"] == [1, 2]
    assert attrs["e"] == '{"k": [1, "v"]}' and attrs["f"] is True and "g" not in attrs
    assert attrs["command"] == "prog --flag" and attrs["seed"] == 3
    assert {"torch", "numpy", "h5py", "python", "git_commit", "created_utc"} <= set(attrs)
