"""The whole reproduction on tiny fake data: one HDF5 file, seeds, ExpandNets, stage times, figures, report, resume."""

from __future__ import annotations

import json
import os

import h5py
import pytest

from runners import reproduce


TINY = dict(
    seeds=1,
    switch_times=3,
    relax=["--n-train", "96", "--n-test", "32", "--channels", "2", "--batch-size", "32", "--lr", "0.01", "--epochs", "3",
           "--relax-epochs", "2", "--t-w", "0,1,3", "--space", "efcn,elcn", "--tw1", "1", "--tw2", "1", "--jobs", "1"],
    interpolation=["--points", "3", "--string-points", "3", "--string-steps", "2", "--n-train", "96", "--n-test", "32",
                   "--batch-size", "32"],
    sharpness=["--k", "1", "--n-train", "64", "--basin-directions", "1", "--trace-probes", "3", "--tol", "1e-1"],
    expandnets=["--modes", "compact,fc", "--l2", "normal,product", "--weight-decay", "0.01", "--epochs", "1", "--n-train", "60",
                "--n-test", "30", "--batch-size", "20", "--cosine-batches", "2", "--kernel-size", "5", "--probe-points", "3",
                "--probe-examples", "40"],
)
STAGES = {"relax", "weights", "interpolation", "sharpness", "expandnets", "merge", "figures+report"}


@pytest.fixture()
def tiny_settings(monkeypatch):
    monkeypatch.setitem(reproduce.SETTINGS, "quick", TINY)


def _checkpoint_times(out) -> dict[str, int]:
    return {str(path.relative_to(out)): path.stat().st_mtime_ns for path in out.rglob("*.pt")}


def test_reproduction_end_to_end(tmp_path, tiny_settings, capsys):
    out = tmp_path / "repro"
    args = ["--out", str(out), "--quick", "--data", "fake", "--quiet", "--interpolate-tw", "0,3"]
    assert reproduce.main(args) == 0
    printed = capsys.readouterr().out
    assert "1 seed (0); ONE seed" in printed and "stage 7/7" in printed
    with h5py.File(out / "results.h5", "r") as store:
        assert {"runs", "weights", "interpolation", "sharpness", "expandnets"} <= set(store)
        assert set(store["interpolation"]) == {"tw0", "tw3"}
        assert (store["interpolation/tw3"].attrs["t_w"], store["interpolation/tw3"].attrs["seed"]) == (3, 0)
        assert {"linear", "string", "output"} <= set(store["interpolation/tw0"])
        assert {"cnn", "efcn_tw0", "efcn_tw3"} == set(store["sharpness"])
        # The root describes the reproduction; each result keeps the provenance its own tool wrote.
        assert store.attrs["created_by"] == "runners.reproduce" and "git_commit" in store.attrs
        assert (store.attrs["mode"], list(store.attrs["seeds"])) == ("quick", [0])
        stages = json.loads(store.attrs["stages"])
        assert (stages["sharpness"], stages["expandnets"]) == ("sharpness.h5", os.path.join("expandnets", "expandnets.h5"))
        tools = {name: store[name].attrs["tool"] for name in ("runs", "weights", "interpolation/tw0", "sharpness", "expandnets")}
        assert tools == {"runs": "runners.relax", "weights": "runners.weights", "interpolation/tw0": "runners.interpolate",
                         "sharpness": "runners.sharpness", "expandnets": "runners.expandnets"}
        assert all("git_commit" in store[name].attrs and "config" in store[name].attrs for name in tools)
        # Stored paths are relative to the merged file's folder and lead to the checkpoints.
        assert store["runs/cnn"].attrs["checkpoint"] == os.path.join("relax", "checkpoints", "cnn", "final.pt")
        # The CNN trains on for the matched controls: the paper's final CNN is its snapshot at --epochs.
        assert store["interpolation/tw3"].attrs["ckpt_a"] == os.path.join("relax", "checkpoints", "cnn", "epoch_3.pt")
        for stored in [store["runs/efcn_tw3"].attrs["checkpoint"], store["interpolation/tw3"].attrs["ckpt_b"],
                       *json.loads(store["sharpness/cnn"].attrs["checkpoints"])]:
            assert (out / stored).is_file(), stored
    figures = {p.name for p in (out / "figures").iterdir()}
    assert {"fig3_dynamics.png", "fig3_dynamics.pdf", "fig6_interpolation.png", "poster_sharpness.png",
            "expandnets_training.png"} <= figures
    report = (out / "report.md").read_text()
    assert "![fig1_efcn_matrix](figures/fig1_efcn_matrix.png)" in report
    assert "expandnets_training skipped" not in report
    with h5py.File(out / "results.h5", "r") as store:  # the report states the set sizes the accuracies rest on
        cnn = store["runs/cnn"].attrs
        assert f"- {cnn['num_train']} training and {cnn['num_test']} test examples" in report
        assert (cnn["num_train"], cnn["num_test"]) == (96, 32)  # TINY's --n-train / --n-test


def test_two_seeds_end_to_end_then_resume_retrains_nothing(tmp_path, tiny_settings, capsys):
    out = tmp_path / "repro"
    args = ["--out", str(out), "--quick", "--seeds", "2", "--seed", "3", "--data", "fake", "--quiet", "--interpolate-tw", "0,3"]
    assert reproduce.main(args) == 0
    printed = capsys.readouterr().out
    assert "2 seeds (3,4)" in printed and "ONE seed" not in printed
    table = printed.split("time per stage")[1]
    assert {line.split()[0] for line in table.strip().splitlines()[1:]} == STAGES | {"total"}
    with h5py.File(out / "results.h5", "r") as store:
        runs = {name: dict(group.attrs) for name, group in store["runs"].items()}
        assert {"cnn_s3", "cnn_s4", "efcn_tw3_s3", "efcn_tw3_s4", "fcn_s4"} <= set(runs)
        pairs = {(runs[name]["protocol_run"], runs[name]["seed"]) for name in ("efcn_tw3_s3", "efcn_tw3_s4")}
        assert pairs == {("efcn_tw3", 3), ("efcn_tw3", 4)}
        paths = {name: (group.attrs["t_w"], group.attrs["seed"]) for name, group in store["interpolation"].items()}
        assert paths == {"tw0_s3": (0, 3), "tw3_s3": (3, 3), "tw0_s4": (0, 4), "tw3_s4": (3, 4)}
        assert store["interpolation/tw3_s4"].attrs["ckpt_b"] == os.path.join("relax", "checkpoints", "efcn_tw3_s4", "final.pt")
        assert set(store["sharpness"]) == {f"{run}_s{seed}" for run in ("cnn", "efcn_tw0", "efcn_tw3") for seed in (3, 4)}
        for seed in (3, 4):  # every CNN snapshot (t_w 0, 1, 3 and the final one) has its sharpness row
            assert len(store[f"sharpness/cnn_s{seed}/curve/epoch"]) == 4
        expand = {(group.attrs["mode"], group.attrs["l2"], int(group.attrs["seed"])) for group in store["expandnets"].values()}
        assert expand == {(mode, l2, seed) for mode, l2 in (("compact", "normal"), ("fc", "normal"), ("fc", "product"))
                          for seed in (3, 4)}
        stage_seconds = json.loads(store.attrs["stage_seconds"])
        assert set(stage_seconds) == STAGES and all(seconds > 0 for seconds in stage_seconds.values())
        assert store.attrs["total_seconds"] == pytest.approx(sum(stage_seconds.values()))
        assert set(store["weights/fig2"]) == {"efcn_tw0_s3", "efcn_tw1_s3", "efcn_tw3_s3"}  # Figs. 2, 5: the first seed
        before = {name: store["runs"][name]["history/test_acc"][()] for name in store["runs"]}
    assert "expandnets_training skipped" not in (out / "report.md").read_text()
    checkpoints = _checkpoint_times(out)
    assert any(name.startswith("expandnets") for name in checkpoints)

    with pytest.raises(SystemExit, match="already holds a reproduction; pass --resume"):
        reproduce.main(args)
    assert reproduce.main([*args, "--resume"]) == 0
    assert _checkpoint_times(out) == checkpoints  # nothing retrained: no checkpoint rewritten
    with h5py.File(out / "results.h5", "r") as store:
        for name, curve in before.items():
            assert (store["runs"][name]["history/test_acc"][()] == curve).all()


def test_merge_renames_and_refuses_collisions(tmp_path):
    for name, result in (("a.h5", "runs"), ("b.h5", "runs")):
        with h5py.File(tmp_path / name, "w") as store:
            store.create_group(result).attrs["checkpoint"] = "checkpoints/x.pt"
    (tmp_path / "sub").mkdir()
    os.replace(tmp_path / "b.h5", tmp_path / "sub" / "b.h5")
    reproduce.merge({"relax": tmp_path / "a.h5", "expandnets": tmp_path / "sub" / "b.h5"}, tmp_path / "m.h5", attrs={"mode": "x"})
    with h5py.File(tmp_path / "m.h5", "r") as store:
        assert store["expandnets"].attrs["checkpoint"] == os.path.join("sub", "checkpoints", "x.pt")
        assert store["runs"].attrs["checkpoint"] == os.path.join("checkpoints", "x.pt") and store.attrs["mode"] == "x"
    with pytest.raises(SystemExit, match="result /runs of .* is already in"):
        reproduce.merge({"relax": tmp_path / "a.h5", "sharpness": tmp_path / "sub" / "b.h5"}, tmp_path / "n.h5")
    assert not (tmp_path / "n.h5").exists()


def test_bad_choices_fail_in_one_line(tmp_path, tiny_settings):
    with pytest.raises(SystemExit, match="contradict"):
        reproduce.main(["--out", str(tmp_path / "x"), "--resume", "--overwrite"])
    with pytest.raises(SystemExit, match=r"--interpolate-tw 7: no eFCN was relaxed at these t_w \(available: 0,1,3\)"):
        reproduce.main(["--out", str(tmp_path / "y"), "--quick", "--data", "fake", "--quiet", "--interpolate-tw", "7"])


@pytest.mark.parametrize("mode", ["quick", "default"])
def test_every_stage_accepts_its_settings(mode):
    """The flags of each mode parse in the runner that gets them (a typo would fail only minutes into a run)."""
    from runners import expandnets, interpolate, relax, sharpness

    settings = reproduce.SETTINGS[mode]
    channels = relax.build_parser().parse_args(settings["relax"]).channels
    assert channels == 64 if mode == "default" else channels <= 32  # the paper's width; quick: faster
    interpolate.build_parser().parse_args([*settings["interpolation"], "--ckpt-a", "a.pt", "--ckpt-b", "b.pt"])
    sharpness.build_parser().parse_args([*settings["sharpness"], "--run-dir", "r"])
    expandnets.build_parser().parse_args([*settings["expandnets"], "--out", "x"])
    assert settings["seeds"] >= (1 if mode == "quick" else 3) and settings["switch_times"] >= 2
