"""The HDF5 store and the output folder under faults (issue 16): concurrent runs, failed overwrites, a full disk.

Each test reproduces one failure of the fault campaign and pins what replaced it: a second
``--overwrite`` on a running job's folder deleted its checkpoints and truncated its file (now: one line
naming the holder, nothing changed); an overwrite that failed had already deleted the old result (now:
set aside, restored); a full disk left ``addr overflow`` for good (now: one line, the file or its last
good copy intact, ``--resume`` finishes); ``--name ../../victim`` wrote outside ``--out`` (now refused
before anything is written).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import pytest

import results.recovery
import results.store
from results import CurveWriter, open_result, read_attrs, read_curve
from runners import interpolate as interpolate_cli
from runners import relax as relax_cli
from runners import train as train_cli

TINY = ["--data", "fake", "--n-train", "32", "--n-test", "16", "--channels", "2", "--batch-size", "16", "--lr", "0.01", "--quiet"]


def _files(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` with its bytes, the lock file aside (it names its holder)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def _train(out: Path, *extra: str) -> int:
    return train_cli.main([*TINY, "--epochs", "1", "--save-at", "0", "--out", str(out), *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished runners.train result (one CNN, snapshot at epoch 0 and final), copied by each test."""
    out = tmp_path_factory.mktemp("trained") / "out"
    assert _train(out) == 0
    return out


def _copy(trained: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    subprocess.run(["cp", "-r", str(trained), str(out)], check=True)
    return out


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert message.startswith("error: ") and "\n" not in message and "Traceback" not in message, message
    return message


@pytest.mark.parametrize("command", ["train", "relax", "interpolate"])
def test_a_second_overwrite_on_a_folder_in_use_names_the_holder_and_changes_nothing(trained, tmp_path, command):
    out = _copy(trained, tmp_path)
    before = _files(out)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, time
            from results import output_lock
            with output_lock(sys.argv[1], argv=["runners.relax", "--out", sys.argv[1]]):
                print("held", flush=True)
                time.sleep(120)
        """), str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SystemExit) as err:
            if command == "train":
                _train(out, "--overwrite")
            elif command == "relax":
                relax_cli.main([*TINY, "--epochs", "1", "--relax-epochs", "1", "--t-w", "0", "--tw1", "", "--jobs", "1",
                                "--out", str(out), "--overwrite"])
            else:
                checkpoints = out / "checkpoints" / "cnn"
                interpolate_cli.main(["--ckpt-a", str(checkpoints / "epoch_0.pt"), "--ckpt-b", str(checkpoints / "final.pt"),
                                      "--data", "fake", "--n-train", "32", "--n-test", "16", "--points", "2", "--methods", "linear",
                                      "--name", "p2", "--overwrite", "--out", str(out / "results.h5"), "--quiet"])
        message = _one_line(err)
        assert f"in use by PID {holder.pid} (runners.relax --out {out})" in message
    finally:
        holder.kill()
        holder.wait()
    assert _files(out) == before


def test_an_overwrite_that_fails_leaves_the_old_result_whole(trained, tmp_path, monkeypatch):
    out = _copy(trained, tmp_path)
    before = _files(out)

    def failing(specs, context, runs, **kwargs):  # writes a new result half-way, then fails
        (out / "checkpoints" / "cnn").mkdir(parents=True, exist_ok=True)
        (out / "checkpoints" / "cnn" / "epoch_0.pt").write_bytes(b"half of a new checkpoint")
        runs.require_group("cnn").attrs["status"] = "running"
        raise ValueError("the new training failed")

    monkeypatch.setattr(train_cli, "run_all", failing)
    with pytest.raises(SystemExit, match="the new training failed"):
        _train(out, "--overwrite")
    after = _files(out)
    assert {k: v for k, v in after.items() if not k.startswith("results.h5")} == {k: v for k, v in before.items() if not k.startswith("results.h5")}
    with h5py.File(out / "results.h5", "r") as store:
        assert read_attrs(store["runs/cnn"])["status"] == "done" and ".pending" not in store
        assert len(read_curve(store["runs/cnn/history"])["epoch"]) == 2
    assert not (out / ".replaced").exists()


def test_a_killed_overwrite_is_undone_by_the_next_command(trained, tmp_path):
    out = _copy(trained, tmp_path)
    final = (out / "checkpoints" / "cnn" / "final.pt").read_bytes()
    script = textwrap.dedent("""
        import os, sys
        from pathlib import Path
        from runners import train
        def killed(specs, context, runs, **kwargs):
            Path(sys.argv[1], "checkpoints", "cnn").mkdir(parents=True, exist_ok=True)
            Path(sys.argv[1], "checkpoints", "cnn", "final.pt").write_bytes(b"new")
            runs.file.flush()
            os._exit(9)
        train.run_all = killed
        train.main(sys.argv[2:])
    """)
    args = [*TINY, "--epochs", "1", "--save-at", "0", "--out", str(out), "--overwrite"]
    assert subprocess.run([sys.executable, "-c", script, str(out), *args], env={**os.environ, "OMP_NUM_THREADS": "1"}).returncode == 9
    assert (out / ".replaced").exists() and (out / "checkpoints" / "cnn" / "final.pt").read_bytes() == b"new"
    assert _train(out, "--resume") == 0  # the next command in the folder puts the old result's files back
    assert (out / "checkpoints" / "cnn" / "final.pt").read_bytes() == final and not (out / ".replaced").exists()
    with h5py.File(out / "results.h5", "r") as store:
        assert store["runs/cnn"].attrs["status"] == "done" and ".pending" not in store


def test_a_full_disk_mid_run_is_one_line_and_resume_finishes(tmp_path, monkeypatch):
    out = tmp_path / "out"
    append = results.store.CurveWriter.append
    calls = {"n": 0}

    def full(self, **row):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        append(self, **row)

    monkeypatch.setattr(results.store.CurveWriter, "append", full)
    with pytest.raises(SystemExit) as err:
        train_cli.main([*TINY, "--epochs", "2", "--out", str(out)])
    message = _one_line(err)
    assert f"no space left on device while writing {out / 'results.h5'}" in message and "bytes free" in message
    assert "results.h5.good" in message and "--resume" in message
    monkeypatch.setattr(results.store.CurveWriter, "append", append)
    assert train_cli.main([*TINY, "--epochs", "2", "--out", str(out), "--resume"]) == 0
    with h5py.File(out / "results.h5", "r") as store:
        assert store["runs/cnn"].attrs["status"] == "done"
        assert read_curve(store["runs/cnn/history"])["epoch"].tolist() == [0, 1, 2]


def test_too_little_free_space_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(results.recovery, "_free", lambda folder: 3 * 2**20)
    with pytest.raises(SystemExit) as err:
        _train(out)
    assert "only 3.0 MiB free in" in _one_line(err) and "free space or choose another --out" in str(err.value)
    assert _files(out) == {}


@pytest.mark.parametrize("damage", ["truncated", "superblock", "heap signature"])
def test_a_damaged_store_on_resume_is_one_line_and_repair_restores_its_good_copy(tmp_path, damage):
    path = tmp_path / "r.h5"
    with open_result(path, "runs", tool="test", config={"k": 1}) as result:
        curve = CurveWriter(result.group, "cnn/history", columns=("epoch", "loss"), index="epoch")
        for epoch in range(3):
            curve.append(epoch=epoch, loss=1.0 / (epoch + 1))
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "superblock":
        data[:8] = b"\0" * 8
    else:
        at = data.find(b"HEAP")
        assert at > 0
        data[at:at + 4] = b"HEAQ"
    path.write_bytes(bytes(data))
    with pytest.raises(results.ResultError) as err:
        open_result(path, "runs", tool="test", config={"k": 1}, resume=True)
    message = str(err.value)
    assert "\n" not in message and f"{path} is damaged" in message and f"python -m runners.repair {path}" in message
    from runners import repair

    assert repair.main([str(path)]) == 0
    assert [p.name.split("-")[0] for p in tmp_path.glob("r.h5.damaged-*")] == ["r.h5.damaged"]
    with open_result(path, "runs", tool="test", config={"k": 1}, resume=True) as result:
        assert read_curve(result.group["cnn/history"])["loss"].tolist() == [1.0, 0.5, 1.0 / 3]


@pytest.mark.parametrize("name", ["../../victim", "/tmp/abs_victim", "..", ".hidden", "a/b"])
def test_run_names_that_leave_out_are_refused_before_anything_is_written(tmp_path, name):
    out = tmp_path / "deep" / "out"
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    with pytest.raises(SystemExit) as err:
        _train(out, "--name", name)
    assert "name" in _one_line(err)
    assert victim.read_text() == "keep me" and _files(tmp_path / "deep") == {}


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    from runners._engine import layout

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "checkpoints").symlink_to(outside)
    with pytest.raises(ValueError, match="outside the output folder"):
        layout.checkpoint_path(tmp_path / "out", "cnn", "final")


@pytest.mark.parametrize("name", ["a/b", "../up", ".x"])
def test_interpolation_names_with_a_slash_or_dots_are_refused_first(trained, tmp_path, name):
    checkpoints = trained / "checkpoints" / "cnn"
    out = tmp_path / "paths.h5"
    with pytest.raises(SystemExit) as err:
        interpolate_cli.main(["--ckpt-a", str(checkpoints / "epoch_0.pt"), "--ckpt-b", str(checkpoints / "final.pt"),
                              "--data", "fake", "--n-train", "32", "--n-test", "16", "--points", "2", "--methods", "linear",
                              "--name", name, "--out", str(out), "--quiet"])
    assert "name" in _one_line(err) and not out.exists()


def test_a_full_disk_while_interpolating_is_one_line(trained, tmp_path, monkeypatch):
    def full(self, **row):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results.store.CurveWriter, "append", full)
    checkpoints = trained / "checkpoints" / "cnn"
    out = tmp_path / "paths.h5"
    with pytest.raises(SystemExit) as err:
        interpolate_cli.main(["--ckpt-a", str(checkpoints / "epoch_0.pt"), "--ckpt-b", str(checkpoints / "final.pt"),
                              "--data", "fake", "--n-train", "32", "--n-test", "16", "--points", "2", "--methods", "linear",
                              "--out", str(out), "--quiet"])
    assert f"no space left on device while writing {out}" in _one_line(err)
    with h5py.File(out, "r") as store:  # the file is whole: the new result was not committed half-way
        assert "interpolation" in store or len(store) == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MiB tmpfs (skipped where this process may not mount one: CI containers without CAP_SYS_ADMIN)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.mark.parametrize("full_at", [1, 2])
def test_a_real_full_disk_leaves_a_resumable_result(small_disk, monkeypatch, full_at):
    out = small_disk / "out"
    append = results.store.CurveWriter.append
    calls = {"n": 0}

    def filling(self, **row):  # the disk fills up while the run writes its history
        calls["n"] += 1
        if calls["n"] == full_at:
            with open(small_disk / "filler", "wb") as filler:
                with pytest.raises(OSError):
                    while True:
                        filler.write(b"\0" * 65536)
                        filler.flush()
        append(self, **row)

    monkeypatch.setattr(results.store.CurveWriter, "append", filling)
    args = [*TINY, "--epochs", "3", "--save-at", "1,2", "--out", str(out)]
    with pytest.raises(SystemExit) as err:
        train_cli.main(args)
    assert "no space left on device while writing" in _one_line(err)
    monkeypatch.setattr(results.store.CurveWriter, "append", append)
    (small_disk / "filler").unlink()
    assert not list(out.rglob("*.partial")) and not list(out.rglob("*.tmp"))
    assert train_cli.main([*args, "--resume"]) == 0
    with h5py.File(out / "results.h5", "r") as store:
        assert store["runs/cnn"].attrs["status"] == "done"
        assert read_curve(store["runs/cnn/history"])["epoch"].tolist() == [0, 1, 2, 3]
