"""An output that cannot be written is one line before anything is computed or written: a read-only folder, a
file where a folder should be, a parent that cannot be created, a folder or read-only file where the result file goes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from embeddings import build_model
from results import save_checkpoint
from runners.interpolate import main as interpolate_main
from runners.sharpness import main as sharpness_main
from runners.train import main as train_main

TRAIN = ["--data", "fake", "--n-train", "40", "--n-test", "16", "--channels", "2", "--epochs", "1", "--quiet"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "cnn.pt", build_model("vanilla1d", channels=2))


def _refuse(monkeypatch, refused: Path) -> None:
    """``os.access`` says no for ``refused``, as for a read-only folder of another user (root passes every chmod)."""
    allowed = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != refused and allowed(path, mode, **kw))


def _fails(main, argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    text = str(exit_info.value.code)
    assert text.startswith("error: ") and "\n" not in text and message in text, text


def _files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


def test_a_read_only_folder_is_one_line_and_nothing_is_written(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    _refuse(monkeypatch, locked)
    _fails(train_main, [*TRAIN, "--out", str(locked / "run")], f"{locked} is not writable to create {locked / 'run'} in")
    _fails(train_main, [*TRAIN, "--out", str(locked)], f"{locked} is not writable (read-only")
    assert _files(locked) == []


def test_a_file_where_a_folder_should_be(tmp_path, checkpoint):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    _fails(train_main, [*TRAIN, "--out", str(a_file / "run")], f"{a_file} is a file, not a folder")
    _fails(train_main, [*TRAIN, "--out", str(a_file)], f"{a_file} is a file, not a folder")
    _fails(interpolate_main, ["--ckpt-a", str(checkpoint), "--ckpt-b", str(checkpoint), *TRAIN[:6], "--methods", "linear", "--quiet",
                              "--out", str(a_file / "paths.h5")], f"{a_file} is a file, not a folder")
    assert a_file.read_text() == "mine" and _files(tmp_path) == [a_file]


def test_a_parent_the_system_will_not_create(tmp_path):
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc, where no folder can be created")
    out = Path("/proc/self/needle-out/run")  # root included: the kernel refuses it
    _fails(train_main, [*TRAIN, "--out", str(out)], "cannot write into /proc/")  # (the lock names the resolved folder)


def test_a_folder_or_a_read_only_file_where_the_result_file_goes(tmp_path, checkpoint, monkeypatch):
    folder = tmp_path / "sharp.h5"
    folder.mkdir()
    _fails(sharpness_main, ["--ckpt", str(checkpoint), *TRAIN[:4], "--k", "1", "--quiet", "--out", str(folder)],
           f"cannot write {folder}: it is a folder, not a result file")
    frozen = tmp_path / "frozen.h5"
    frozen.write_bytes(b"")
    _refuse(monkeypatch, frozen)
    _fails(sharpness_main, ["--ckpt", str(checkpoint), *TRAIN[:4], "--k", "1", "--quiet", "--out", str(frozen)],
           f"cannot write {frozen}: the file is read-only")
    assert set(_files(tmp_path)) == {folder, frozen} and frozen.read_bytes() == b""
