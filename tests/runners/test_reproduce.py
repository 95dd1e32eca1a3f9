"""The whole reproduction on tiny fake data: one HDF5 file, figures, report, resume, no silent overwrite."""

from __future__ import annotations

import json
import os

import h5py
import pytest

from runners import reproduce


TINY = dict(
    relax=["--n-train", "96", "--n-test", "32", "--channels", "2", "--batch-size", "32", "--lr", "0.01", "--epochs", "3",
           "--relax-epochs", "2", "--t-w", "0,1,3", "--space", "efcn,elcn", "--tw1", "1", "--tw2", "1", "--jobs", "1"],
    interpolation=["--points", "3", "--string-points", "3", "--string-steps", "2", "--n-train", "96", "--n-test", "32",
                   "--batch-size", "32"],
    sharpness=["--k", "1", "--n-train", "64", "--basin-directions", "1", "--trace-probes", "3", "--tol", "1e-1"],
)


@pytest.fixture()
def tiny_settings(monkeypatch):
    monkeypatch.setitem(reproduce.SETTINGS, "quick", TINY)


def test_reproduction_end_to_end_then_resume(tmp_path, tiny_settings, capsys):
    out = tmp_path / "repro"
    args = ["--out", str(out), "--quick", "--data", "fake", "--quiet", "--interpolate-tw", "0,3"]
    assert reproduce.main(args) == 0
    with h5py.File(out / "results.h5", "r") as store:
        assert {"runs", "weights", "interpolation", "sharpness"} <= set(store)
        assert set(store["interpolation"]) == {"tw0", "tw3"} and store["interpolation/tw3"].attrs["t_w"] == 3
        assert {"linear", "string", "output"} <= set(store["interpolation/tw0"])
        assert {"cnn", "fcn", "efcn_tw0", "efcn_tw3"} == set(store["sharpness"])
        # The root describes the reproduction; each result keeps the provenance its own tool wrote.
        assert store.attrs["created_by"] == "runners.reproduce" and "git_commit" in store.attrs
        assert json.loads(store.attrs["stages"])["sharpness"] == "sharpness.h5"
        tools = {name: store[name].attrs["tool"] for name in ("runs", "weights", "interpolation/tw0", "sharpness")}
        assert tools == {"runs": "runners.relax", "weights": "runners.weights", "interpolation/tw0": "runners.interpolate",
                         "sharpness": "runners.sharpness"}
        assert all("git_commit" in store[name].attrs and "config" in store[name].attrs for name in tools)
        # Stored paths are relative to the merged file's folder and lead to the checkpoints.
        assert store["runs/cnn"].attrs["checkpoint"] == os.path.join("relax", "checkpoints", "cnn", "final.pt")
        for stored in [store["runs/efcn_tw3"].attrs["checkpoint"], store["interpolation/tw3"].attrs["ckpt_b"],
                       *json.loads(store["sharpness/cnn"].attrs["checkpoints"])]:
            assert (out / stored).is_file(), stored
        before = {name: store["runs"][name]["history/test_acc"][()] for name in store["runs"]}
    figures = {p.name for p in (out / "figures").iterdir()}
    assert {"fig3_dynamics.png", "fig3_dynamics.pdf", "fig6_interpolation.png", "poster_sharpness.png"} <= figures
    report = (out / "report.md").read_text()
    for heading in ("## Fig. 3-5", "## Fig. 6", "## Sharpness", "![fig1_efcn_matrix](figures/fig1_efcn_matrix.png)"):
        assert heading in report
    assert "stage 6/6" in capsys.readouterr().out
    # The report's Fig. 3 table is the HDF5's numbers.
    with h5py.File(out / "results.h5", "r") as store:
        runs = {name: dict(store["runs"][name].attrs) for name in store["runs"]}
    fig3 = report.split("## Fig. 3-5")[1].split("###")[0]
    for t_w in (0, 1, 3):
        row = next(line for line in fig3.splitlines() if line.startswith(f"| {t_w} |")).split("|")
        assert row[2].strip() == f"{100 * runs[f'efcn_tw{t_w}']['final_test_acc']:.1f}"
        assert row[4].strip() == f"{runs[f'efcn_tw{t_w}']['final_delta']:.3g}"
        assert row[8].strip() == f"{100 * runs[f'elcn_tw{t_w}']['final_test_acc']:.1f}"

    with pytest.raises(SystemExit, match="already holds a reproduction; pass --resume"):
        reproduce.main(args)
    assert reproduce.main([*args, "--resume"]) == 0  # everything done: nothing retrained, same numbers
    with h5py.File(out / "results.h5", "r") as store:
        for name, curve in before.items():
            assert (store["runs"][name]["history/test_acc"][()] == curve).all()


def test_bad_choices_fail_in_one_line(tmp_path, tiny_settings):
    with pytest.raises(SystemExit, match="contradict"):
        reproduce.main(["--out", str(tmp_path / "x"), "--resume", "--overwrite"])
    with pytest.raises(SystemExit, match=r"--interpolate-tw 7: no eFCN was relaxed at these t_w \(available: 0,1,3\)"):
        reproduce.main(["--out", str(tmp_path / "y"), "--quick", "--data", "fake", "--quiet", "--interpolate-tw", "7"])
