"""``python -m runners.expandnets``: end-to-end on tiny fake data, product L2, bad input."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from embeddings import build_model, expand, product_l2
from landscape import evaluate
from results import load_checkpoint, read_curve
from runners import expandnets
from runners._engine import HISTORY_COLUMNS, load_data, penalised, squared_norms, state_path
from runners._engine import expandnets as engine_expandnets


TINY = ["--data", "fake", "--n-train", "60", "--n-test", "30", "--batch-size", "20", "--epochs", "1",
        "--cosine-batches", "2", "--quiet"]


def _run(capsys, *argv: str) -> dict:
    assert expandnets.main([*TINY, *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_product_l2_adds_the_gradient_of_the_penalty_float64():
    net = expand(build_model("smallnet1d", kernel_size=5), "ck+fc", rate=2).double()
    x = torch.randn(8, 1, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8) % 10
    wrapped = penalised(net, 0.3)
    wrapped.train()
    got = torch.autograd.grad(nn.functional.cross_entropy(wrapped(x), y), list(net.parameters()))
    expected = torch.autograd.grad(nn.functional.cross_entropy(net(x), y) + 0.15 * product_l2(net), list(net.parameters()))
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), net(x))
    trained, compressed = squared_norms(net)
    assert compressed == pytest.approx(float(product_l2(net).detach()), rel=1e-12) and trained > 0


def test_product_l2_refuses_a_compact_net():
    with pytest.raises(ValueError, match=r"product L2 needs an expanded net"):
        penalised(build_model("smallnet1d"), 0.1)


def test_end_to_end_writes_histories_cosines_and_compressed_checkpoints(tmp_path, capsys):
    out = tmp_path / "xn"
    summary = _run(capsys, "--out", str(out), "--kernel-size", "5", "--modes", "compact,ck",
                   "--l2", "normal,product", "--weight-decay", "0.01", "--seed", "1")
    assert set(summary) == {"compact", "ck", "ck_productl2"}
    assert summary["ck"]["compression_error"]["mean"] < 1e-5
    data = load_data("fake", n_train=60, n_test=30, seed=1)  # --seed also seeds the fake data
    with h5py.File(out / "expandnets.h5", "r") as f:
        assert f["runs"].attrs["tool"] == "runners.expandnets" and f["runs"].attrs["data"] == "fake"
        assert sorted(f["runs"]) == sorted(f"{name}_seed1" for name in summary)
        run = f["runs/ck_productl2_seed1"]
        assert set(run["history"]) == {*HISTORY_COLUMNS, "min_cosine", "mean_cosine", "l2_trained", "l2_compressed"}
        assert run["history/epoch"][()].tolist() == [0.0, 1.0]
        assert -1 <= run["history/min_cosine"][0] <= run["history/mean_cosine"][0] <= 1
        assert len(run["final_cosines/cosine"]) == 1  # two batches, one pair
        assert run.attrs["status"] == "done" and run.attrs["num_params"] > run.attrs["num_params_compact"]
        compact_norms = f["runs/compact_seed1/history"]
        assert compact_norms["l2_trained"][()].tolist() == compact_norms["l2_compressed"][()].tolist()
        model, meta = load_checkpoint(out / run.attrs["checkpoint"])
        assert meta["mode"] == "ck" and meta["l2"] == "product"
        assert evaluate(model, None, data.batches("test", 100)).accuracy == pytest.approx(run.attrs["compressed_test_acc"])
        assert run.attrs["compressed_test_acc"] == pytest.approx(run.attrs["final_test_acc"])
        # the two kinds of weight decay train differently
        assert run["history/l2_compressed"][1] != f["runs/ck_seed1/history/l2_compressed"][1]
    assert not (out / "state" / "ck_seed1.pt").exists()


def test_landscape_probes_of_the_compressed_net(tmp_path, capsys):
    out = tmp_path / "xn"
    summary = _run(capsys, "--out", str(out), "--kernel-size", "5", "--modes", "ck", "--probe-points", "3", "--probe-examples", "40")
    assert summary["ck"]["top_hessian_eigenvalue"]["mean"] > 0
    with h5py.File(out / "expandnets.h5", "r") as f:
        run = f["runs/ck_seed0"]
        assert run["surface_1d/alpha"][()].tolist() == [-1.0, 0.0, 1.0]
        model, _ = load_checkpoint(out / run.attrs["checkpoint"])
        x, y = load_data("fake", n_train=60, n_test=30).x_train[:40], load_data("fake", n_train=60, n_test=30).y_train[:40]
        assert run["surface_1d/train_loss"][1] == pytest.approx(evaluate(model, None, [(x, y)]).loss, rel=1e-5)


def test_resume_skips_finished_runs_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "xn"
    first = _run(capsys, "--out", str(out), "--modes", "compact,fc", "--repeats", "2")
    with h5py.File(out / "expandnets.h5", "r") as f:
        accuracies = [f[f"runs/fc_seed{s}"].attrs["compressed_test_acc"] for s in (0, 1)]
    assert first["fc"]["seeds"] == 2
    assert first["fc"]["compressed_test_acc"]["mean"] == pytest.approx(sum(accuracies) / 2)
    assert first["fc"]["compressed_test_acc"]["std"] == pytest.approx(abs(accuracies[0] - accuracies[1]) / 2**0.5)  # ddof=1
    with h5py.File(out / "expandnets.h5", "a") as f:
        f["runs/fc_seed1"].attrs["status"] = "running"  # as if killed during this run
        del f["runs/fc_seed1/history"]
    assert _run(capsys, "--out", str(out), "--modes", "compact,fc", "--repeats", "2", "--resume") == first
    with pytest.raises(SystemExit, match=r"result 'runs' already exists in .*expandnets.h5; pass --resume"):
        expandnets.main([*TINY, "--out", str(out), "--modes", "compact,fc", "--repeats", "2"])
    # --seeds 2 is what --repeats 2 stands for: the same configuration
    assert _run(capsys, "--out", str(out), "--modes", "compact,fc", "--seeds", "2", "--resume") == first
    with pytest.raises(SystemExit, match=r"--resume with other options than result 'runs' .*\(changed: modes, seeds\)"):
        expandnets.main([*TINY, "--out", str(out), "--modes", "compact", "--resume"])


class _Kill(Exception):
    pass


def test_resume_after_an_interruption_continues_the_unfinished_run(tmp_path, capsys, monkeypatch):
    argv = ["--modes", "compact,fc", "--epochs", "3"]
    real_train = engine_expandnets.train
    resumed_from: dict[str, int] = {}

    def killed_in_fc_at_epoch_2(model, data, *, on_epoch, desc, **kwargs):
        def on_epoch_or_kill(record):
            if desc == "fc_seed0" and record.epoch == 2:  # the state of epoch 1 is saved, epoch 2's is not
                raise _Kill
            on_epoch(record)

        return real_train(model, data, on_epoch=on_epoch_or_kill, desc=desc, **kwargs)

    def recorded(model, data, *, desc, **kwargs):
        result = real_train(model, data, desc=desc, **kwargs)
        resumed_from[desc] = result.resumed_from
        return result

    out = tmp_path / "killed"
    monkeypatch.setattr(engine_expandnets, "train", killed_in_fc_at_epoch_2)
    with pytest.raises(_Kill):
        expandnets.main([*TINY, *argv, "--out", str(out)])
    assert state_path(out, "fc_seed0").is_file() and state_path(out, "fc_seed0") == out / "state" / "fc_seed0.pt"
    with h5py.File(out / "expandnets.h5", "r") as f:
        assert f["runs/compact_seed0"].attrs["status"] == "done" and f["runs/fc_seed0"].attrs["status"] == "running"
    monkeypatch.setattr(engine_expandnets, "train", recorded)
    resumed = _run(capsys, *argv, "--out", str(out), "--resume")
    assert resumed_from == {"fc_seed0": 1}  # the done run is not retrained; the other continues after epoch 1
    assert not state_path(out, "fc_seed0").exists()
    whole = _run(capsys, *argv, "--out", str(tmp_path / "whole"))
    assert resumed == whole
    with h5py.File(out / "expandnets.h5", "r") as f, h5py.File(tmp_path / "whole/expandnets.h5", "r") as g:
        for run in ("compact_seed0", "fc_seed0"):
            ours, theirs = read_curve(f[f"runs/{run}/history"]), read_curve(g[f"runs/{run}/history"])
            assert ours["epoch"].tolist() == [0, 1, 2, 3]
            for column, values in theirs.items():
                np.testing.assert_array_equal(ours[column], values, err_msg=f"{run}/{column}")


def test_overwrite_replaces_the_runs_and_only_their_files(tmp_path, capsys):
    out = tmp_path / "xn"
    _run(capsys, "--out", str(out), "--modes", "compact")
    (out / "checkpoints/other").mkdir()
    with h5py.File(out / "expandnets.h5", "a") as f:
        f.create_group("kept").attrs["tool"] = "someone.else"
    _run(capsys, "--out", str(out), "--modes", "fc", "--overwrite")
    with h5py.File(out / "expandnets.h5", "r") as f:
        assert sorted(f["runs"]) == ["fc_seed0"] and "kept" in f
    assert not (out / "checkpoints/compact_seed0").exists() and (out / "checkpoints/other").is_dir()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--modes", "compact,kc"], r"--modes takes a comma-separated list from compact, fc, cl, ck, cl\+fc, ck\+fc; got 'compact,kc'"),
        (["--l2", "both"], r"--l2 takes a comma-separated list from normal, product; got 'both'"),
        (["--kernel-size", "3", "--modes", "ck"], r"error: expand: mode 'ck' .* kernel_size=\(3,\)\. Use mode 'cl'"),
        (["--kernel-size", "4"], r"error: SmallNet: kernel_size must be odd"),
        (["--rate", "0"], r"--rate must be at least 1; got 0"),
        (["--probe-points", "-1"], r"--probe-points must be at least 0; got -1"),
        (["--cosine-batches", "9"], r"--cosine-batches 9 exceeds the full batches of the training set"),
    ],
)
def test_bad_input_is_one_clear_line_and_writes_nothing(tmp_path, argv, message):
    with pytest.raises(SystemExit, match=message):
        expandnets.main([*TINY, "--out", str(tmp_path / "xn"), *argv])
    assert not (tmp_path / "xn").exists()


def test_help_documents_every_flag():
    text = expandnets.build_parser().format_help()
    for flag in ("--modes", "--rate", "--l2", "--weight-decay", "--cosine-batches", "--repeats", "--resume", "--seed"):
        assert flag in text


def test_repeats_and_seeds_together_are_refused_in_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"^error: --repeats is an alias of --seeds N; pass one of them$"):
        expandnets.main([*TINY, "--out", str(tmp_path / "xn"), "--repeats", "2", "--seeds", "0,4"])
    assert not (tmp_path / "xn").exists()
