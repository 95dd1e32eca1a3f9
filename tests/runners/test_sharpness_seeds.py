"""runners.sharpness on a run directory of several seeds: --runs names protocol runs, --seeds keeps some, rows carry the seed."""

from __future__ import annotations

import h5py
import pytest
import torch

from embeddings import build_model, to_efcn
from results import open_store, read_curve, save_checkpoint, write_attrs
from runners.sharpness import main

FAST = ["--data", "fake", "--n-train", "32", "--batch-size", "32", "--k", "1", "--trace-probes", "3",
        "--basin-directions", "1", "--basin-max", "0.5", "--coordinates", "own", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """Seeds 1 and 2 of a relax protocol: cnn_s<seed> and efcn_tw1_s<seed> final checkpoints, described in results.h5."""
    out = tmp_path_factory.mktemp("seeds")
    with open_store(out / "results.h5") as store:
        write_attrs(store.require_group("runs"), {"seed": 1})
        for seed in (1, 2):
            torch.manual_seed(seed)
            cnn = build_model("vanilla1d", channels=2)
            # checkpoints without seed metadata: only results.h5 says which seed a folder holds
            save_checkpoint(out / f"checkpoints/cnn_s{seed}/final.pt", cnn, epoch=1, run=f"cnn_s{seed}")
            save_checkpoint(out / f"checkpoints/efcn_tw1_s{seed}/final.pt", to_efcn(cnn), epoch=1, run=f"efcn_tw1_s{seed}", t_w=1)
            for run in ("cnn", "efcn_tw1"):
                write_attrs(store.require_group(f"runs/{run}_s{seed}"), {"status": "done", "seed": seed, "protocol_run": run})
    return out


def _groups(path):
    with h5py.File(path, "r") as store:
        return {name: (dict(group.attrs), read_curve(group["curve"])["seed"].tolist()) for name, group in store["sharpness"].items()}


def test_runs_name_protocol_runs_of_every_seed_and_rows_keep_the_seed(run_dir, tmp_path):
    out = tmp_path / "s.h5"
    assert main(["--run-dir", str(run_dir), "--runs", "cnn", "--out", str(out), *FAST]) == 0
    groups = _groups(out)
    assert set(groups) == {"cnn_s1", "cnn_s2"}
    for seed in (1, 2):
        attrs, seeds = groups[f"cnn_s{seed}"]
        assert attrs["seed"] == seed and attrs["protocol_run"] == "cnn" and seeds == [seed]


def test_seeds_keep_only_those_seeds(run_dir, tmp_path):
    out = tmp_path / "s.h5"
    assert main(["--run-dir", str(run_dir), "--runs", "efcn_tw1,cnn", "--seed", "2", "--seeds", "1", "--out", str(out), *FAST]) == 0
    assert set(_groups(out)) == {"cnn_s2", "efcn_tw1_s2"}


def test_seeds_that_select_nothing_fail_in_one_line(run_dir, tmp_path):
    with pytest.raises(SystemExit, match=r"--seeds 5,6 selects no run in .*; its runs have seeds \[1, 2\]$"):
        main(["--run-dir", str(run_dir), "--seeds", "5,6", "--out", str(tmp_path / "s.h5"), *FAST])
    with pytest.raises(SystemExit, match=r"--runs names \['fcn'\] not found in .*available: cnn, efcn_tw1"):
        main(["--run-dir", str(run_dir), "--runs", "fcn", "--out", str(tmp_path / "s.h5"), *FAST])
    assert not (tmp_path / "s.h5").exists()
