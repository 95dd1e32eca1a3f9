"""Matched controls: the CNN trains until t_w + E, records the final CNN and near-zero loss; the gains readers."""

import json
import math

import h5py
import numpy as np
import pytest

from results import read_attrs, read_curve
from runners import relax
from runners._engine import NEAR_ZERO_LOSS, record_cnn_references
from runners._figures import (MissingData, cnn_accuracy_at, final_cnn_acc, gain_vs_final_cnn, gain_vs_matched_cnn,
                              relax_gains)

TINY = ["--data", "fake", "--n-train", "64", "--n-test", "32", "--channels", "2", "--batch-size", "32", "--lr", "0.01",
        "--epochs", "3", "--relax-epochs", "2", "--t-w", "0,3", "--tw1", "", "--jobs", "1", "--quiet"]


def _cnn(path):
    with h5py.File(path, "r") as store:
        return read_attrs(store["runs/cnn"]), read_curve(store["runs/cnn/history"]), read_attrs(store["runs/efcn_tw3"])


def test_relax_trains_the_cnn_as_long_as_the_longest_relaxed_run_and_records_its_references(tmp_path, capsys):
    assert relax.main([*TINY, "--out", str(tmp_path / "matched")]) == 0
    assert "final CNN = epoch 3" in capsys.readouterr().out
    cnn, curve, efcn = _cnn(tmp_path / "matched" / "results.h5")
    # efcn_tw3 has seen 3 + 2 epochs: the CNN trains 5, its snapshots stay those of the switch times.
    assert cnn["epochs"] == 5 and curve["epoch"].tolist() == [0, 1, 2, 3, 4, 5]
    assert sorted(p.name for p in (tmp_path / "matched" / "checkpoints" / "cnn").iterdir()) == ["epoch_0.pt", "epoch_3.pt", "final.pt"]
    assert cnn["reference_epoch"] == 3 and cnn["reference_test_acc"] == curve["test_acc"][3]
    assert cnn["reference_train_loss"] == curve["train_loss"][3] and cnn["near_zero_loss_threshold"] == NEAR_ZERO_LOSS == 1e-2
    below = [e for e, loss in zip(curve["epoch"], curve["train_loss"]) if loss <= 1e-2]
    if below:
        assert cnn["near_zero_loss_epoch"] == below[0] and cnn["near_zero_loss_test_acc"] == curve["test_acc"][below[0]]
    else:
        assert math.isnan(cnn["near_zero_loss_epoch"]) and math.isnan(cnn["near_zero_loss_test_acc"])
    assert gain_vs_matched_cnn(efcn, curve) == efcn["final_test_acc"] - curve["test_acc"][5]
    assert gain_vs_final_cnn(efcn, cnn) == efcn["final_test_acc"] - curve["test_acc"][3]

    assert relax.main([*TINY, "--no-matched-controls", "--out", str(tmp_path / "plain")]) == 0
    plain, plain_curve, plain_efcn = _cnn(tmp_path / "plain" / "results.h5")
    assert plain["epochs"] == 3 and plain["reference_epoch"] == 3 and plain["reference_test_acc"] == plain_curve["test_acc"][-1]
    # The same seed: the first three epochs are the same CNN, the matched control of efcn_tw3 is not there.
    assert np.array_equal(plain_curve["test_acc"], curve["test_acc"][:4])
    assert math.isnan(gain_vs_matched_cnn(plain_efcn, plain_curve))


def test_near_zero_loss_epoch_is_the_first_epoch_at_or_below_the_threshold(tmp_path):
    with h5py.File(tmp_path / "r.h5", "w") as store:
        for name, space, losses in (("cnn", "cnn", [2.0, 0.5, 0.01, 0.0005, 0.02]), ("fcn", "fcn", [2.0, 0.0])):
            group = store.create_group(f"runs/{name}")
            group.attrs.update({"space": space, "status": "done", "reference_epoch": 2, "epochs": len(losses) - 1})
            history = group.create_group("history")
            history["epoch"] = np.arange(len(losses))
            history["train_loss"] = np.array(losses)
            history["test_acc"] = np.linspace(0.1, 0.9, len(losses))
        assert record_cnn_references(store["runs"]) == ["cnn"]  # CNN runs only
        cnn = read_attrs(store["runs/cnn"])
        assert "near_zero_loss_epoch" not in store["runs/fcn"].attrs
    assert cnn["near_zero_loss_epoch"] == 2 and cnn["near_zero_loss_test_acc"] == pytest.approx(0.5)  # 1e-2 <= threshold
    assert cnn["reference_test_acc"] == pytest.approx(0.5) and cnn["reference_train_loss"] == 0.01


def _synthetic(path, seeds_attrs=True):
    """Two seeds' CNNs trained 6 epochs (final CNN at 4) and one eFCN per seed switched at t_w = 2, E = 3."""
    acc = {0: [0.10, 0.50, 0.60, 0.70, 0.72, 0.74, 0.75], 1: [0.10, 0.40, 0.55, 0.65, 0.70, 0.71, 0.73]}
    with h5py.File(path, "w") as store:
        runs = store.create_group("runs")
        runs.attrs["config"] = json.dumps({"seed": 0})
        for seed in (0, 1):
            cnn = runs.create_group(f"cnn_s{seed}")
            cnn.attrs.update({"space": "cnn", "status": "done", "epochs": 6, "reference_epoch": 4, "final_test_acc": acc[seed][-1],
                              "reference_test_acc": acc[seed][4], "seed": seed, "protocol_run": "cnn"})
            history = cnn.create_group("history")
            history["epoch"], history["test_acc"] = np.arange(7), np.array(acc[seed])
            runs.create_group(f"efcn_tw2_s{seed}").attrs.update(
                {"space": "efcn", "t_w": 2, "epochs": 3, "final_test_acc": 0.80 - 0.1 * seed, "seed": seed, "protocol_run": "efcn_tw2"})


def test_gain_readers_on_a_synthetic_file(tmp_path):
    _synthetic(tmp_path / "r.h5")
    with h5py.File(tmp_path / "r.h5", "r") as store:
        assert cnn_accuracy_at(store, 1, 5) == 0.71 and cnn_accuracy_at(store["runs"], 0, 4) == 0.72
        assert math.isnan(cnn_accuracy_at(store, 0, 9))  # the CNN stopped at epoch 6
        with pytest.raises(MissingData, match="the CNN run of seed 7"):
            cnn_accuracy_at(store, 7, 1)
        efcn = {s: read_attrs(store[f"runs/efcn_tw2_s{s}"]) for s in (0, 1)}
        cnn = {s: read_attrs(store[f"runs/cnn_s{s}"]) for s in (0, 1)}
        history = {s: read_curve(store[f"runs/cnn_s{s}/history"]) for s in (0, 1)}
    # matched: the eFCN has seen 2 + 3 = 5 epochs -> CNN at epoch 5 (0.74 and 0.71)
    assert gain_vs_matched_cnn(efcn[0], history[0]) == pytest.approx(0.80 - 0.74)
    assert gain_vs_matched_cnn(efcn[1], history[1]) == pytest.approx(0.70 - 0.71)
    # final: the CNN at its reference epoch 4 (0.72 and 0.70), not its last row (0.75 and 0.73)
    assert gain_vs_final_cnn(efcn[0], cnn[0]) == pytest.approx(0.80 - 0.72)
    assert gain_vs_final_cnn(efcn[1], cnn[1]) == pytest.approx(0.70 - 0.70)
    assert math.isnan(final_cnn_acc({k: v for k, v in cnn[0].items() if k != "reference_test_acc"}))
    with pytest.raises(KeyError):  # a matched gain needs the run's epochs
        gain_vs_matched_cnn({"final_test_acc": 0.8, "t_w": 2}, history[0])


def test_one_seed_file_without_seed_attributes_and_relax_gains_use_the_final_cnn(tmp_path):
    with h5py.File(tmp_path / "r.h5", "w") as store:
        runs = store.create_group("runs")
        runs.attrs["config"] = json.dumps({"seed": 3})
        cnn = runs.create_group("cnn")
        cnn.attrs.update({"space": "cnn", "epochs": 5, "reference_epoch": 3, "reference_test_acc": 0.6, "final_test_acc": 0.9})
        cnn.create_group("history")
        cnn["history/epoch"], cnn["history/test_acc"] = np.arange(6), np.array([0.1, 0.3, 0.5, 0.6, 0.8, 0.9])
        runs.create_group("efcn_tw1").attrs.update({"space": "efcn", "t_w": 1, "epochs": 2, "final_test_acc": 0.7})
    with h5py.File(tmp_path / "r.h5", "r") as store:
        assert cnn_accuracy_at(store, 3, 4) == 0.8  # no seed attribute: the configuration's seed
        with pytest.raises(MissingData):
            cnn_accuracy_at(store, 0, 4)
        gains = relax_gains(store)
    assert gains.runs == ("efcn_tw1",) and gains.gain.tolist() == pytest.approx([0.7 - 0.6])
