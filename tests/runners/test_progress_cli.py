"""A CLI logged to a file (a cluster job) prints progress lines at the NEEDLE_PROGRESS_INTERVAL, and none with --quiet."""

from __future__ import annotations

import re
import sys

import pytest

from runners.train import main

LINE = re.compile(r"^(?P<desc>[\w -]+): (?P<n>\d+)/(?P<total>\d+) \((?P<pct>\d+)%\), \d+ s elapsed(, ~\d+ s left)?( \[.*\])?$")


@pytest.mark.parametrize("quiet", [False, True])
def test_a_cli_logged_to_a_file_prints_progress_lines_and_none_when_quiet(tmp_path, monkeypatch, quiet):
    monkeypatch.setenv("NEEDLE_PROGRESS_INTERVAL", "0")
    log = tmp_path / "job.err"
    argv = ["--data", "fake", "--n-train", "40", "--n-test", "16", "--channels", "2", "--batch-size", "8", "--epochs", "3",
            "--out", str(tmp_path / "run"), *(["--quiet"] if quiet else [])]
    with open(log, "w") as stream:
        monkeypatch.setattr(sys, "stderr", stream)
        assert main(argv) == 0
    lines = [LINE.match(line) for line in log.read_text().splitlines()]
    progress = [(m["n"], m["total"]) for m in lines if m]
    assert progress == ([] if quiet else [("1", "3"), ("2", "3"), ("3", "3")])


def test_paths_strings_and_probes_logged_to_a_file_print_their_own_lines(tmp_path, monkeypatch):
    import torch

    from embeddings import build_model, to_efcn
    from results import save_checkpoint
    from runners.interpolate import main as interpolate_main
    from runners.sharpness import main as sharpness_main

    torch.manual_seed(0)
    cnn = build_model("vanilla1d", channels=2)
    a, b = save_checkpoint(tmp_path / "cnn.pt", cnn), save_checkpoint(tmp_path / "efcn.pt", to_efcn(cnn))
    monkeypatch.setenv("NEEDLE_PROGRESS_INTERVAL", "0")
    log = tmp_path / "job.err"
    data = ["--data", "fake", "--n-train", "40", "--n-test", "16", "--batch-size", "20"]
    with open(log, "w") as stream:
        monkeypatch.setattr(sys, "stderr", stream)
        assert interpolate_main(["--ckpt-a", str(a), "--ckpt-b", str(b), *data, "--methods", "linear,string", "--points", "3",
                                 "--string-steps", "2", "--string-lr", "0.01", "--out", str(tmp_path / "paths.h5")]) == 0
        assert sharpness_main(["--ckpt", str(a), str(b), *data[:4], "--k", "1", "--trace-probes", "3", "--basin-directions", "1",
                               "--coordinates", "own", "--out", str(tmp_path / "sharp.h5")]) == 0
    shown = {(m["desc"], m["n"], m["total"]) for m in map(LINE.match, log.read_text().splitlines()) if m}
    assert {("linear", "3", "3"), ("string steps", "2", "2"), ("string", "3", "3"), ("sharpness", "2", "2")} <= shown
