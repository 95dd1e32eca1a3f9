"""A CLI logged to a file (a cluster job) prints progress lines at the NEEDLE_PROGRESS_INTERVAL, and none with --quiet."""

from __future__ import annotations

import re
import sys

import pytest

from runners.train import main

LINE = re.compile(r"^(?P<desc>[\w-]+): (?P<n>\d+)/(?P<total>\d+) \((?P<pct>\d+)%\), \d+ s elapsed(, ~\d+ s left)?( \[.*\])?$")


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
