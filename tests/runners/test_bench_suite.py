"""``python -m runners.bench all --quick --json`` and the README table generated from it (no timing asserted)."""

import json
import math

import pytest

from runners import bench

RATIOS = {
    "hvp_over_grad.cnn", "hvp_over_grad.efcn", "blocked_over_single.cnn", "elcn_over_cnn.vanilla1d", "elcn_over_cnn.vanilla2d",
    "lanczos_top5_peak_GiB.100M", "restarted_over_full.lanczos", "interp_over_naive.cnn", "interp_over_naive.efcn",
    "blocked_over_single.efcn",
}


@pytest.mark.slow  # trains a tiny CNN and runs PyHessian: ~15 s of CPU
def test_quick_run_reports_every_ratio_next_to_its_anchor(tmp_path, capsys):
    saved = tmp_path / "docs" / "bench.json"
    assert bench.main(["all", "--quick", "--json", "--save", str(saved)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert json.loads(saved.read_text()) == report
    rows = {row["ratio"]: row for row in report["table"]}
    assert RATIOS <= set(rows) and any(name.startswith("pyhessian_over_ours.top") for name in rows)
    for name, row in rows.items():
        assert row["anchor"] and row["target"], name
        if row["value"] is None:
            assert row["note"] and row["met"] is None, name  # an empty slot says why
        else:
            assert math.isfinite(row["value"]) and row["value"] > 0 and isinstance(row["met"], bool), name
    for measured in ("hvp_over_grad.cnn", "blocked_over_single.cnn", "elcn_over_cnn.vanilla1d", "elcn_over_cnn.vanilla2d",
                     "interp_over_naive.cnn", "interp_over_naive.efcn"):
        assert rows[measured]["value"] is not None, measured
    assert rows["lanczos_top5_peak_GiB.100M"]["note"] == "run with --with-lanczos-100m"
    machine = report["machine"]
    assert machine["threads"] == 1 and machine["quick"] is True
    assert len(machine["load_average_before"]) == 3 and len(machine["load_average_after"]) == 3
    assert "vmap" in report["notes"]["seeds_vmap"]
    assert {"elcn", "interp", "hessian"} <= set(report["details"])


def _report(value: float | None) -> dict:
    row = {"ratio": "elcn_over_cnn.vanilla2d", "what": "eLCN step / CNN step", "value": value, "anchor": "the CNN",
           "target": "<= 2", "met": None if value is None else value <= 2, "note": "" if value is not None else "pending"}
    machine = {"started": "2026-01-01T00:00:00+00:00", "seconds": 12.0, "cpu_count": 2, "threads": 1, "repeats": 5,
               "load_average_before": [1.5, 1.0, 0.5], "load_average_after": [2.5, 1.0, 0.5]}
    return {"table": [row], "machine": machine, "notes": {"seeds_vmap": "never"}, "details": {}}


def test_readme_table_is_rewritten_between_its_markers_only(tmp_path, capsys):
    source, readme = tmp_path / "bench.json", tmp_path / "README.md"
    source.write_text(json.dumps(_report(3.25)))
    readme.write_text("# Title\n\nbefore\n<!-- bench-table:start -->\nold table\n<!-- bench-table:end -->\nafter\n")
    assert bench.main(["readme", "--from", str(source), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n<!-- bench-table:start -->\n") and text.endswith("<!-- bench-table:end -->\nafter\n")
    assert "old table" not in text
    assert "| eLCN step / CNN step | 3.25 | the CNN | <= 2 | **no** |" in text
    assert "load average 1.5 before, 2.5 after" in text
    source.write_text(json.dumps(_report(None)))  # a second rewrite replaces the first table, keeps one pair of markers
    bench.main(["readme", "--from", str(source), "--readme", str(readme)])
    text = readme.read_text()
    assert text.count("bench-table:start") == 1 and "| eLCN step / CNN step | — (pending) |" in text and "3.25" not in text


def test_readme_without_markers_or_table_fails_in_one_line(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    source = tmp_path / "bench.json"
    source.write_text(json.dumps(_report(1.0)))
    with pytest.raises(SystemExit, match=r"^error: .*README.md has no <!-- bench-table:start --> \.\.\. <!-- bench-table:end --> markers"):
        bench.main(["readme", "--from", str(source), "--readme", str(readme)])
    with pytest.raises(SystemExit, match=r"^error: cannot read the bench table .*missing.json.*bench all --save docs/bench.json"):
        bench.main(["readme", "--from", str(tmp_path / "missing.json"), "--readme", str(readme)])
    assert readme.read_text() == "# no markers\n"
