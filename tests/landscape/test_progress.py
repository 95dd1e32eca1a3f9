"""Progress shows anywhere: lines at a steady interval off a terminal, a bar on one, nothing when disabled
(the CLIs: tests/runners/test_progress_cli.py)."""

from __future__ import annotations

import io
import re
import sys

import pytest
import torch

from landscape import Progress, StringConfig, elastic_string, loss_surface, track
from landscape._progress import DEFAULT_INTERVAL, INTERVAL_VARIABLE, progress_interval

LINE = re.compile(r"^(?P<desc>[\w -]+): (?P<n>\d+)/(?P<total>\d+) \((?P<pct>\d+)%\), \d+ s elapsed(, ~\d+ s left)?( \[.*\])?$")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_every_update_past_the_interval_prints_one_line():
    out = io.StringIO()
    with Progress(4, desc="work", interval=0, stream=out) as bar:
        for _ in range(4):
            bar.update(1)
    lines = out.getvalue().splitlines()
    assert [LINE.match(line)["n"] for line in lines] == ["1", "2", "3", "4"]
    assert LINE.match(lines[1])["pct"] == "50" and "left" in lines[1] and "left" not in lines[-1]


def test_a_long_interval_prints_nothing_for_short_work_and_disabled_prints_nothing():
    quiet, patient = io.StringIO(), io.StringIO()
    for stream, options in ((quiet, dict(interval=0, enabled=False)), (patient, dict(interval=3600))):
        with Progress(3, desc="work", stream=stream, **options) as bar:
            bar.update(3)
    assert quiet.getvalue() == "" and patient.getvalue() == ""


def test_a_terminal_gets_a_bar_not_lines():
    out = _Terminal()
    with Progress(2, desc="work", interval=0, stream=out) as bar:
        bar.update(2)
    assert "\r" in out.getvalue() and not any(LINE.match(line) for line in out.getvalue().splitlines())


def test_the_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(INTERVAL_VARIABLE, raising=False)
    assert progress_interval() == DEFAULT_INTERVAL
    monkeypatch.setenv(INTERVAL_VARIABLE, "2.5")
    assert progress_interval() == 2.5
    monkeypatch.setenv(INTERVAL_VARIABLE, "soon")
    with pytest.warns(UserWarning, match=r"NEEDLE_PROGRESS_INTERVAL='soon' is not a number of seconds >= 0"):
        assert progress_interval() == DEFAULT_INTERVAL


def test_string_and_surface_report_their_steps(monkeypatch):
    monkeypatch.setenv(INTERVAL_VARIABLE, "0")
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    model = torch.nn.Linear(2, 1, bias=False).double()
    batches = [(torch.eye(2, dtype=torch.float64), torch.zeros(2, 1, dtype=torch.float64))]
    a, b = {"weight": torch.zeros(1, 2, dtype=torch.float64)}, {"weight": torch.ones(1, 2, dtype=torch.float64)}
    elastic_string(model, torch.nn.MSELoss(), batches, params_a=a, params_b=b, config=StringConfig(num_points=3, steps=3, lr=0.1),
                   progress=True)
    loss_surface(model, torch.nn.MSELoss(), batches, dims=2, grid_points=2, progress=True)
    assert list(track([1, 2], desc="points")) == [1, 2]
    descs = [(m["desc"], m["n"], m["total"]) for m in map(LINE.match, sys.stderr.getvalue().splitlines())]
    assert descs == [("string steps", "1", "3"), ("string steps", "2", "3"), ("string steps", "3", "3"),
                     ("surface", "1", "4"), ("surface", "2", "4"), ("surface", "3", "4"), ("surface", "4", "4"),
                     ("points", "1", "2"), ("points", "2", "2")]
