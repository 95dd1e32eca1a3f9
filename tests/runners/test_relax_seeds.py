"""``runners.relax --seeds``: every seed's protocol in one file, per-run seed attributes, aggregates over seeds."""

import math

import h5py
import numpy as np
import pytest

from results import paired, read_attrs, read_curve, summarize
from runners import relax
from runners._engine.aggregates import GAIN, METRICS, cnn_final_test_acc
from runners._figures.readers import final_cnn_acc

SMALL = ["--data", "fake", "--n-train", "64", "--n-test", "32", "--channels", "2", "--batch-size", "32", "--lr", "0.01",
         "--epochs", "2", "--relax-epochs", "1", "--t-w", "0,2", "--tw1", "", "--quiet", "--jobs", "1"]
PROTOCOL = {"cnn", "fcn", "efcn_tw0", "efcn_tw2"}


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    out = tmp_path_factory.mktemp("seeds")
    assert relax.main([*SMALL, "--seed", "3", "--seeds", "2", "--out", str(out)]) == 0
    return out


def _attrs(path):
    with h5py.File(path, "r") as store:
        runs = {name: read_attrs(group) for name, group in store["runs"].items()}
        aggregates = {name: read_attrs(group) for name, group in store["aggregates"].items()}
        # test accuracy by epoch, per run
        tests = {name: dict(zip(*(read_curve(group["history"])[c] for c in ("epoch", "test_acc")))) for name, group in store["runs"].items()}
        tool = store["aggregates"].attrs["tool"]
    return runs, aggregates, tests, tool


def test_every_seed_has_suffixed_runs_with_their_seed_and_protocol_run(two_seeds):
    runs, _, _, _ = _attrs(two_seeds / "results.h5")
    assert set(runs) == {f"{run}_s{seed}" for run in PROTOCOL for seed in (3, 4)}
    for name, attrs in runs.items():
        assert name == f"{attrs['protocol_run']}_s{attrs['seed']}" and attrs["status"] == "done"
    assert runs["efcn_tw2_s4"]["parent"] == "cnn_s4"
    assert (two_seeds / "checkpoints/efcn_tw2_s4/final.pt").is_file() and (two_seeds / "checkpoints/cnn_s3/epoch_2.pt").is_file()
    # different seeds, different initialisations: the two CNNs do not train identically
    assert runs["cnn_s3"]["final_train_loss"] != runs["cnn_s4"]["final_train_loss"]


def test_aggregates_are_the_stats_of_the_per_seed_attributes(two_seeds, capsys):
    runs, aggregates, tests, tool = _attrs(two_seeds / "results.h5")
    assert tool == "runners.relax" and set(aggregates) == PROTOCOL
    for run in PROTOCOL:
        stored = aggregates[run]
        assert list(stored["seeds"]) == [3, 4]
        for metric in METRICS:
            expected = summarize([runs[f"{run}_s{seed}"][metric] for seed in (3, 4)])
            got = (stored[f"{metric}_mean"], stored[f"{metric}_std"], stored[f"{metric}_ci_low"], stored[f"{metric}_ci_high"])
            np.testing.assert_allclose(got, (expected.mean, expected.std, expected.ci_low, expected.ci_high), equal_nan=True)
            assert stored[f"{metric}_n"] == expected.n
    # the paired gain is the mean of per-seed differences against the same seed's CNN at the end of the
    # protocol's --epochs 2 (a CNN trained on for matched controls marks that epoch reference_epoch)
    assert all(runs[f"cnn_s{s}"].get("reference_epoch", 2) == 2 for s in (3, 4))
    differences = [runs[f"efcn_tw2_s{s}"]["final_test_acc"] - tests[f"cnn_s{s}"][2] for s in (3, 4)]
    # the figures' reader of the final CNN (defined for the report) agrees with the aggregates' reference
    assert [final_cnn_acc(runs[f"cnn_s{s}"]) for s in (3, 4)] == [tests[f"cnn_s{s}"][2] for s in (3, 4)]
    assert aggregates["efcn_tw2"][f"{GAIN}_mean"] == pytest.approx(np.mean(differences))
    assert aggregates["efcn_tw2"][f"{GAIN}_n"] == 2 and f"{GAIN}_mean" not in aggregates["cnn"]


def test_the_cnn_reference_is_its_reference_epoch_when_set(tmp_path):
    with h5py.File(tmp_path / "r.h5", "w") as f:
        cnn = f.create_group("cnn")
        history = cnn.create_group("history")
        history["epoch"], history["test_acc"], history["train_loss"] = np.arange(4), np.array([0.1, 0.2, 0.3, 0.4]), np.full(4, 1.0)
        assert cnn_final_test_acc(cnn) == 0.4
        cnn.attrs["reference_epoch"] = 2
        assert cnn_final_test_acc(cnn) == 0.3
        cnn.attrs["reference_epoch"] = 9
        with pytest.raises(ValueError, match="no history row at that epoch"):
            cnn_final_test_acc(cnn)


def test_the_gain_is_paired_by_seed_attribute_not_by_name(tmp_path):
    from runners._engine.aggregates import aggregate

    with h5py.File(tmp_path / "r.h5", "w") as f:
        runs = f.create_group("runs")
        # names that do not say the seed: only the attributes pair the runs
        for name, protocol_run, seed, acc, history in (("a", "cnn", 0, 0.9, [0.5, 0.7, 0.9]), ("b", "cnn", 1, 0.95, [0.6, 0.85, 0.95]),
                                                        ("c", "efcn_tw2", 1, 0.9, [0.0]), ("d", "efcn_tw2", 0, 0.8, [0.0])):
            group = runs.create_group(name)
            group.attrs.update(status="done", protocol_run=protocol_run, seed=seed, final_test_acc=acc)
            group.create_group("history").update(epoch=np.arange(len(history)), test_acc=np.array(history),
                                                 train_loss=np.ones(len(history)))
            if protocol_run == "cnn":
                group.attrs["reference_epoch"] = 1  # trained on past the protocol's end: the reference is epoch 1
        gain = aggregate(runs)["efcn_tw2"][GAIN]
    # per seed: seed 0 0.8 - 0.7 = 0.1, seed 1 0.9 - 0.85 = 0.05
    assert gain.n == 2 and gain.mean == pytest.approx(0.075) and gain.std == pytest.approx(0.05 / math.sqrt(2))


def test_one_seed_keeps_the_names_and_adds_the_attributes(tmp_path, capsys):
    out = tmp_path / "one"
    assert relax.main([*SMALL, "--t-w", "2", "--seed", "5", "--out", str(out)]) == 0
    runs, aggregates, _, _ = _attrs(out / "results.h5")
    assert set(runs) == {"cnn", "fcn", "efcn_tw2"}
    assert runs["efcn_tw2"]["seed"] == 5 and runs["efcn_tw2"]["protocol_run"] == "efcn_tw2"
    assert aggregates["efcn_tw2"]["final_test_acc_n"] == 1 and math.isnan(aggregates["efcn_tw2"]["final_test_acc_ci_low"])
    printed = capsys.readouterr().out
    assert "gain vs final cnn" in printed and "efcn_tw2" in printed.split("over seeds 5")[1]
    # resume recomputes the aggregates in place; a new run of the same name still needs a flag
    assert relax.main([*SMALL, "--t-w", "2", "--seed", "5", "--out", str(out), "--resume"]) == 0
    with pytest.raises(SystemExit, match="--resume"):
        relax.main([*SMALL, "--t-w", "2", "--seed", "5", "--out", str(out)])


def test_a_count_and_its_list_are_the_same_configuration_for_resume(two_seeds):
    assert relax.main([*SMALL, "--seed", "3", "--seeds", "3,4", "--out", str(two_seeds), "--resume"]) == 0


@pytest.mark.parametrize("seeds, words", [("0", ">= 1"), ("1,1", "repeat"), ("x", "count or")])
def test_bad_seeds_fail_in_one_line(tmp_path, capsys, seeds, words):
    with pytest.raises(SystemExit):
        relax.main([*SMALL, "--seeds", seeds, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--seeds" in err and words in err
    assert not (tmp_path / "r").exists()


def test_a_shard_trains_its_branches_for_every_seed():
    from runners._engine import protocol, seeded, shard_runs

    specs = protocol(epochs=4, relax_epochs=2, t_w=(0, 4), spaces=("efcn",), tw1=(1,), tw2=(2,))
    shards = [{s.name for s in seeded(shard_runs(specs, i, 2), (0, 1))} for i in (0, 1)]
    assert shards[0] == {f"{run}_s{seed}" for run in ("cnn", "fcn", "efcn_tw4") for seed in (0, 1)}
    assert {"cnn_s0", "cnn_s1", "elcn_tw1_s1", "efcn_tw1_1_tw2_2_s1"} <= shards[1]
    assert {s.parent for s in seeded(specs, (0, 1)) if s.name == "efcn_tw1_1_tw2_2_s1"} == {"elcn_tw1_s1"}


@pytest.mark.slow  # two worker processes importing torch
def test_parallel_seeds_give_the_same_numbers(two_seeds, tmp_path):
    out = tmp_path / "two"
    assert relax.main([*SMALL[:-2], "--jobs", "2", "--threads", "1", "--seed", "3", "--seeds", "2", "--out", str(out)]) == 0
    parallel, serial = _attrs(out / "results.h5")[2], _attrs(two_seeds / "results.h5")[2]
    assert set(parallel) == set(serial)
    for name in serial:
        assert parallel[name] == pytest.approx(serial[name])
