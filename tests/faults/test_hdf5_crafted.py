"""Crafted or damaged HDF5 result files (issue 16): one line and bounded memory on --resume and in runners.figures.

The fault campaign got a JSONDecodeError / AttributeError / RecursionError / KeyError traceback for
malformed ``config`` JSON, deep nesting, wrong attribute types and missing members; ``OSError ...
truncated file`` and ``RuntimeError`` for a cut file and flipped metadata bytes; a flipped bit in a
curve drawn as another number; and a 122 KB file whose curves claim 3e8 rows made the readers
allocate 2.24 GiB per column. Each case here builds such a file from a real one.
"""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest

from results import CurveWriter, ResultError, UnreadableData, open_result, read_curve
from runners import figures as figures_cli
from runners import relax as relax_cli

TINY = ["--data", "fake", "--n-train", "32", "--n-test", "16", "--channels", "2", "--batch-size", "16", "--lr", "0.01", "--quiet",
        "--epochs", "1", "--relax-epochs", "1", "--t-w", "0", "--tw1", "", "--jobs", "1"]


@pytest.fixture(scope="module")
def relax_file(tmp_path_factory) -> Path:
    """A real ``runners.relax`` result file (CNN, FCN, one eFCN), copied and damaged by each test."""
    out = tmp_path_factory.mktemp("relax")
    assert relax_cli.main([*TINY, "--out", str(out)]) == 0
    return out / "results.h5"


def _flip_heap(path: Path) -> None:
    data = bytearray(path.read_bytes())
    at = data.find(b"HEAP")
    data[at:at + 4] = b"HEAQ"
    path.write_bytes(bytes(data))


def _claim_3e8_rows(path: Path) -> None:
    with h5py.File(path, "a") as store:
        history = store["runs/cnn/history"]
        for column in list(history):
            del history[column]
            history.create_dataset(column, shape=(0,), maxshape=(None,), dtype="f8", chunks=(4096,)).resize((300_000_000,))


CRAFTED = {
    "malformed config JSON": lambda p: _attrs(p, "runs", config="{not json"),
    "deep nesting": lambda p: _attrs(p, "runs", config="[" * 200_000 + "]" * 200_000),
    "config of the wrong type": lambda p: _attrs(p, "runs", config=np.arange(3)),
    "wrong attribute types": lambda p: _attrs(p, "runs/cnn", space=np.arange(4), final_test_acc="high", seed="zero"),
    "missing member": lambda p: _delete(p, "runs/cnn/history"),
    "truncated file": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "flipped metadata bytes": _flip_heap,
    "3e8 rows claimed": _claim_3e8_rows,
}


def _attrs(path: Path, group: str, **values) -> None:
    with h5py.File(path, "a") as store:
        for key, value in values.items():
            store[group].attrs[key] = value


def _delete(path: Path, member: str) -> None:
    with h5py.File(path, "a") as store:
        del store[member]


@pytest.mark.parametrize("craft", CRAFTED)
def test_figures_on_a_crafted_file_is_one_line_in_bounded_memory(relax_file, tmp_path, craft, capsys):
    path = tmp_path / "results.h5"
    shutil.copy(relax_file, path)
    CRAFTED[craft](path)
    tracemalloc.start()
    try:
        figures_cli.main(["--results", str(path), "--out", str(tmp_path / "figures"), "--only", "fig3_dynamics,fig4_delta",
                          "--claims-md", str(tmp_path / "claims.md")])
    except SystemExit as err:  # refused: one line naming the file; any other exception fails the test
        message = str(err)
        assert message.startswith("error: ") and "\n" not in message and str(path) in message, message
    else:  # drawn or skipped, each skip one line: a damage the figures do not read is no error
        assert "Traceback" not in capsys.readouterr().err
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 200 * 2**20, f"{craft}: peak {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("craft", ["malformed config JSON", "deep nesting", "config of the wrong type", "truncated file",
                                   "flipped metadata bytes"])
def test_resume_on_a_crafted_file_is_one_line(relax_file, tmp_path, craft):
    path = tmp_path / "results.h5"
    shutil.copy(relax_file, path)
    CRAFTED[craft](path)
    with pytest.raises(SystemExit) as err:
        relax_cli.main([*TINY, "--out", str(tmp_path), "--resume"])
    message = str(err.value)
    assert message.startswith("error: ") and "\n" not in message and str(path) in message, message


def test_a_tool_attribute_of_the_wrong_type_is_one_line(tmp_path):
    path = tmp_path / "r.h5"
    with open_result(path, "a", tool="test", config={}) as result:
        result.group.attrs["x"] = 1
    _attrs(path, "a", tool=np.arange(2))
    with pytest.raises(ResultError, match=r"malformed tool or config attribute"):
        open_result(path, "a", tool="test", config={}, resume=True)


def test_a_flipped_bit_in_a_curve_is_one_line_naming_the_file_and_dataset(tmp_path):
    path = tmp_path / "r.h5"
    with open_result(path, "runs", tool="test", config={}) as result:
        curve = CurveWriter(result.group, "cnn/history", columns=("epoch", "loss"), index="epoch")
        for epoch in range(4):
            curve.append(epoch=epoch, loss=0.123456789 * (epoch + 1))
    data = bytearray(path.read_bytes())
    at = data.find(np.float64(0.123456789 * 3).tobytes())
    data[at + 3] ^= 0x04  # one bit of the third point's loss
    path.write_bytes(bytes(data))
    with h5py.File(path, "r") as store:
        with pytest.raises(UnreadableData) as err:
            read_curve(store["runs/cnn/history"])
        assert read_curve.__module__ and store["runs/cnn/history/epoch"][()].tolist() == [0, 1, 2, 3]  # other columns intact
    message = str(err.value)
    assert "\n" not in message and f"{path}: dataset /runs/cnn/history/loss cannot be read" in message and "checksum" in message


def test_a_dataset_claiming_3e8_rows_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "r.h5"
    with h5py.File(path, "w") as store:
        store.create_dataset("curve/loss", shape=(0,), maxshape=(None,), dtype="f8", chunks=(4096,)).resize((300_000_000,))
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    try:
        with h5py.File(path, "r") as store, pytest.raises(UnreadableData, match=r"claims shape \(300000000,\).*stores 0 bytes"):
            read_curve(store["curve"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20


def test_resume_on_curves_claiming_3e8_rows_is_one_line_in_bounded_memory(relax_file, tmp_path):
    out = tmp_path / "relax"
    shutil.copytree(relax_file.parent, out)  # with its checkpoints: every run is done, the curves are read
    _claim_3e8_rows(out / "results.h5")
    tracemalloc.start()
    try:
        with pytest.raises(SystemExit) as err:
            relax_cli.main([*TINY, "--out", str(out), "--resume"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(err.value)
    assert message.startswith("error: ") and "\n" not in message and "claims shape (300000000,)" in message, message
    assert peak < 200 * 2**20
