"""The relax protocol end to end on tiny data: HDF5 contents, checkpoints, resume after a kill, bad input."""

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from results import load_checkpoint, read_attrs, read_curve
from runners import relax
from runners._engine import default_switch_times


TINY = ["--data", "fake", "--n-train", "96", "--n-test", "32", "--channels", "2", "--batch-size", "32", "--lr", "0.01",
        "--epochs", "3", "--relax-epochs", "2", "--t-w", "0,3", "--tw1", "1", "--tw2", "1", "--quiet"]
RUNS = {"cnn", "fcn", "efcn_tw0", "efcn_tw3", "elcn_tw0", "elcn_tw1", "elcn_tw3", "efcn_tw1_1_tw2_1"}


def _histories(path: Path) -> dict[str, dict[str, np.ndarray]]:
    with h5py.File(path, "r") as store:
        return {name: read_curve(store["runs"][name]["history"]) for name in store["runs"]}


def test_protocol_end_to_end(tmp_path, capsys):
    out = tmp_path / "relax"
    assert relax.main([*TINY, "--space", "efcn,elcn", "--jobs", "1", "--out", str(out)]) == 0
    assert "efcn_tw1_1_tw2_1" in capsys.readouterr().out
    with h5py.File(out / "results.h5", "r") as store:
        result = read_attrs(store["runs"])  # provenance of the result, on its group
        assert result["tool"] == "runners.relax" and result["seed"] == 0 and "git_commit" in result and result["total_seconds"] > 0
        assert set(store["runs"]) == RUNS
        runs = {name: read_attrs(store["runs"][name]) for name in store["runs"]}
        curves = {name: read_curve(store["runs"][name]["history"]) for name in store["runs"]}
    assert all(a["status"] == "done" for a in runs.values())
    assert runs["efcn_tw3"]["t_w"] == 3 and runs["efcn_tw3"]["parent"] == "cnn" and runs["efcn_tw3"]["space"] == "efcn"
    assert runs["efcn_tw1_1_tw2_1"]["tw1"] == 1 and runs["efcn_tw1_1_tw2_1"]["parent"] == "elcn_tw1"
    for name, curve in curves.items():
        epochs = runs[name]["epochs"]
        assert curve["epoch"].tolist() == list(range(epochs + 1))
        assert runs[name]["final_test_acc"] == curve["test_acc"][-1]
        assert 0 <= curve["test_acc"].min() and curve["test_acc"].max() <= 1
    # The eFCN starts exactly where the CNN was at its switch time, off-local weights at zero.
    assert curves["efcn_tw3"]["test_loss"][0] == pytest.approx(curves["cnn"]["test_loss"][3], abs=1e-5)
    assert curves["efcn_tw3"]["delta"][0] == 0 and runs["efcn_tw3"]["final_delta"] > 0
    assert curves["efcn_tw1_1_tw2_1"]["test_loss"][0] == pytest.approx(curves["elcn_tw1"]["test_loss"][1], abs=1e-5)
    assert runs["fcn"]["final_delta"] > 0.5 and math.isnan(runs["cnn"]["final_delta"])
    for name in ("efcn_tw0", "fcn"):
        assert 0 <= runs[name]["local_only_acc"] <= 1 and 0 <= runs[name]["offlocal_only_acc"] <= 1
    assert "local_only_acc" not in runs["cnn"] or math.isnan(runs["cnn"]["local_only_acc"])
    model, meta = load_checkpoint(out / runs["efcn_tw3"]["checkpoint"])
    assert model.space == "efcn" and meta["t_w"] == 3
    assert (out / "checkpoints/cnn/epoch_1.pt").is_file() and (out / "checkpoints/elcn_tw1/epoch_1.pt").is_file()
    assert not list((out / "state").iterdir())


@pytest.mark.slow  # three extra processes importing torch: ~10 s on an idle machine
def test_parallel_jobs_give_the_same_numbers(tmp_path):
    args = [*TINY, "--tw1", "", "--t-w", "0,2"]
    # One thread per run both ways: --threads holds with --jobs 1 too (it was ignored there, issue 16).
    relax.main([*args, "--jobs", "1", "--threads", "1", "--out", str(tmp_path / "one")])
    relax.main([*args, "--jobs", "2", "--threads", "1", "--out", str(tmp_path / "two")])
    one, two = _histories(tmp_path / "one/results.h5"), _histories(tmp_path / "two/results.h5")
    assert set(one) == set(two) == {"cnn", "fcn", "efcn_tw0", "efcn_tw2"}
    for name in one:
        for column in one[name]:
            np.testing.assert_array_equal(one[name][column], two[name][column], err_msg=f"{name}/{column}")


def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path):
    # Small steps and many of them, so that the kill lands inside the CNN's training.
    args = ["--data", "fake", "--n-train", "600", "--n-test", "50", "--channels", "4", "--batch-size", "10",
            "--epochs", "4", "--relax-epochs", "1", "--t-w", "0,4", "--tw1", "", "--quiet", "--jobs", "1"]
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen([sys.executable, "-m", "runners.relax", *args, "--out", str(killed)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (killed / "state" / "cnn.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    with h5py.File(killed / "results.h5", "r") as store:
        assert read_attrs(store["runs/cnn"])["status"] == "running"
    relax.main([*args, "--out", str(killed), "--resume"])
    relax.main([*args, "--out", str(tmp_path / "whole")])
    resumed, whole = _histories(killed / "results.h5"), _histories(tmp_path / "whole/results.h5")
    assert set(resumed) == set(whole) == {"cnn", "fcn", "efcn_tw0", "efcn_tw4"}
    for name in whole:
        for column in whole[name]:
            np.testing.assert_array_equal(resumed[name][column], whole[name][column], err_msg=f"{name}/{column}")
    with h5py.File(killed / "results.h5", "r") as store:
        assert read_attrs(store["runs/cnn"])["resumed_from"] >= 1


def test_existing_results_need_resume_or_overwrite(tmp_path, capsys):
    out = str(tmp_path / "r")
    args = [*TINY, "--tw1", "", "--t-w", "0", "--jobs", "1", "--out", out]
    relax.main(args)
    with pytest.raises(SystemExit, match=r"result 'runs' already exists in .*results.h5; pass --resume to continue it or --overwrite"):
        relax.main(args)
    with pytest.raises(SystemExit, match=r"--resume with other options than result 'runs' in .* \(changed: lr\)"):
        relax.main([*args, "--resume", "--lr", "0.5"])
    assert relax.main([*args, "--resume"]) == 0  # everything done: nothing retrained
    (tmp_path / "r/checkpoints/cnn/stale.pt").write_bytes(b"x")
    (tmp_path / "r/checkpoints/not_a_run_of_this_result").mkdir()
    assert relax.main([*args, "--overwrite"]) == 0
    assert not (tmp_path / "r/checkpoints/cnn/stale.pt").exists()  # the replaced runs' folders go ...
    assert (tmp_path / "r/checkpoints/not_a_run_of_this_result").is_dir()  # ... and nothing else


def test_checkpoints_the_file_does_not_list_are_not_overwritten_silently(tmp_path):
    (tmp_path / "r/checkpoints/cnn").mkdir(parents=True)
    with pytest.raises(SystemExit, match=r"^error: .* holds checkpoints or state of run cnn that .*results.h5 does not list; pass --overwrite"):
        relax.main([*TINY, "--tw1", "", "--t-w", "0", "--jobs", "1", "--out", str(tmp_path / "r")])
    assert not (tmp_path / "r/results.h5").exists()


@pytest.mark.parametrize("extra,message", [
    (["--t-w", "0,70"], r"error: --t-w 70 lies beyond --epochs 3; switch times must be in 0..3"),
    (["--tw1", "9"], r"error: --tw1 9 lies beyond --epochs 3"),
    (["--tw2", "5"], r"error: --tw2 5 lies beyond --relax-epochs 2"),
    (["--space", "cnn"], r"error: --space takes efcn, elcn or efcn,elcn; got cnn"),
    (["--data", "cifar10"], r"error: cifar10 needs root= \(--data-root\)"),
    (["--data", "cifar10", "--data-root", "DATA"], r"error: cifar10 not found: missing .*data_batch_1; pass download=True \(--download\)"),
    (["--lr", "-1"], r"error: lr must be a finite positive number, got -1.0 \(check the --lr flag\)"),
])
def test_bad_input_one_line_and_nothing_written(tmp_path, extra, message):
    out = tmp_path / "r"
    extra = [str(tmp_path) if e == "DATA" else e for e in extra]
    with pytest.raises(SystemExit, match=message):
        relax.main([*TINY, "--out", str(out), *extra])
    assert not out.exists()


def test_unknown_data_set_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        relax.main(["--data", "mnist"])
    assert "expected mnist1d, digits, cifar10, cifar100, fake, npz:PATH, folder:PATH or package.module:function, got 'mnist'" \
        in capsys.readouterr().err


def test_default_switch_times_are_log_spaced():
    assert default_switch_times(60) == (0, 1, 2, 4, 8, 16, 32, 60)
    assert default_switch_times(1) == (0, 1)


@pytest.mark.slow  # spawns a protocol with two worker processes
def test_workers_exit_when_the_parent_is_killed(tmp_path):
    args = ["--data", "fake", "--n-train", "2000", "--channels", "8", "--batch-size", "10", "--epochs", "20",
            "--tw1", "", "--quiet", "--jobs", "2", "--threads", "1", "--out", str(tmp_path / "r")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen([sys.executable, "-m", "runners.relax", *args], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (tmp_path / "r" / "state").is_dir() and time.monotonic() < deadline:
        time.sleep(0.05)
    children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    assert children, "the protocol should have started worker processes"
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [pid for pid in children if Path(f"/proc/{pid}").exists()
             and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()]
    assert not alive, f"orphaned workers still running: {alive}"
