"""``python -m runners.bench distributed --json``: equal results of one process and 2 gloo ranks (timings not asserted)."""

import json

import pytest

from runners import bench
from runners._bench import PROBES


@pytest.mark.slow  # spawns two torch processes: ~20 s
def test_distributed_benchmark_reports_equal_results(capsys):
    assert bench.main(["distributed", "--n-train", "300", "--batch-size", "50", "--channels", "4", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["distributed"]
    assert rows["ranks"] == 2
    for probe in PROBES:
        assert rows[f"max_abs_diff_{probe}"] < 1e-4, probe  # SLQ densities are O(1) values of a few-step Lanczos
        assert rows[f"single_s_{probe}"] > 0 and rows[f"ranks_s_{probe}"] > 0


def test_distributed_benchmark_needs_two_ranks():
    with pytest.raises(SystemExit, match="--ranks must be at least 2 to compare with one process, got 1"):
        bench.main(["distributed", "--ranks", "1"])
