"""The CLIs on the user's own data (--data npz:, --data module:function) and objectives (--loss), and their one-line errors."""

from __future__ import annotations

import json
import sys
import textwrap

import h5py
import numpy as np
import pytest
import torch

from results import load_checkpoint, read_attrs, read_curve
from runners import interpolate as interpolate_cli
from runners import sharpness as sharpness_cli
from runners import train as train_cli

MODULE = "needle_cli_user"
TINY = ["--channels", "2", "--batch-size", "8", "--lr", "0.01", "--epochs", "1", "--quiet"]
SHARP = ["--k", "1", "--trace-probes", "3", "--basin-directions", "1", "--basin-max", "0.5", "--coordinates", "own", "--quiet"]


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A data function and a loss in a module of tmp_path, importable in this process and in subprocesses."""
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / f"{MODULE}.py").write_text(textwrap.dedent('''
        import numpy as np
        import torch.nn.functional as F

        def four_classes():
            rng = np.random.default_rng(3)
            return rng.normal(size=(24, 1, 10)), np.arange(24) % 4, rng.normal(size=(8, 1, 10)), np.arange(8) % 4

        def half_ce(outputs, targets):
            return 0.5 * F.cross_entropy(outputs, targets)

        def three():
            return 1, 2, 3

        not_callable = 5
    '''))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", str(folder))  # for the pool's worker processes
    yield MODULE
    sys.modules.pop(MODULE, None)


def _npz(path, classes: int, n_train=24, n_test=8, length=10):
    rng = np.random.default_rng(classes)
    np.savez(path, x_train=rng.normal(size=(n_train, 1, length)).astype(np.float32), y_train=np.arange(n_train) % classes,
             x_test=rng.normal(size=(n_test, 1, length)).astype(np.float32), y_test=np.arange(n_test) % classes)
    return f"npz:{path}"


def _history(out, name):
    with h5py.File(out / "results.h5", "r") as store:
        return read_attrs(store[f"runs/{name}"]), read_curve(store[f"runs/{name}/history"]), json.loads(store[f"runs/{name}"].attrs["config"])


def test_train_on_npz_with_mse_records_the_mean_squared_error(tmp_path, capsys):
    data = _npz(tmp_path / "set.npz", classes=3)
    assert train_cli.main(["--data", data, "--loss", "mse", *TINY, "--out", str(tmp_path / "r")]) == 0
    attrs, history, config = _history(tmp_path / "r", "cnn")
    assert config["data"] == data and config["loss"] == "mse"
    model, _ = load_checkpoint(tmp_path / "r" / attrs["checkpoint"])
    arrays = np.load(tmp_path / "set.npz")
    with torch.no_grad():
        outputs = model(torch.from_numpy(arrays["x_train"]))
    assert outputs.shape == (24, 3)  # the classes came from the data
    one_hot = torch.eye(3)[torch.from_numpy(arrays["y_train"])]
    assert history["train_loss"][-1] == pytest.approx(float(((outputs - one_hot) ** 2).mean()), rel=1e-5)
    # the loss is part of the configuration a resume must match
    with pytest.raises(SystemExit, match=r"error: --resume with other options .*\(changed: loss\)"):
        train_cli.main(["--data", data, "--loss", "ce", *TINY, "--out", str(tmp_path / "r"), "--resume"])


def test_train_on_an_import_path_with_an_imported_loss(tmp_path, user_module):
    out = tmp_path / "r"
    for name, loss in (("ce", "ce"), ("half", f"{user_module}:half_ce")):
        assert train_cli.main(["--data", f"{user_module}:four_classes", "--loss", loss, *TINY, "--epochs", "0",
                               "--name", name, "--out", str(out)]) == 0
    ce, half = _history(out, "ce")[1], _history(out, "half")[1]
    # the same initial model under half the cross entropy; accuracy stays argmax-based
    assert half["train_loss"][0] == pytest.approx(0.5 * ce["train_loss"][0], rel=1e-6)
    assert half["test_acc"][0] == ce["test_acc"][0]
    model, _ = load_checkpoint(out / "checkpoints/half/final.pt")
    assert model(torch.zeros(1, 1, 10)).shape == (1, 4)


@pytest.fixture
def four_class_checkpoint(tmp_path):
    """A checkpoint of a 4-class model on (1, 10) inputs, and 10-class data of the same shape."""
    out = tmp_path / "four"
    assert train_cli.main(["--data", _npz(tmp_path / "four.npz", classes=4), *TINY, "--out", str(out)]) == 0
    return out / "checkpoints/cnn/final.pt", _npz(tmp_path / "ten.npz", classes=10, n_train=40)


def test_interpolate_and_sharpness_use_the_loss(tmp_path, four_class_checkpoint):
    checkpoint, _ = four_class_checkpoint
    data = _npz(tmp_path / "four.npz", classes=4)
    out = tmp_path / "paths.h5"
    assert interpolate_cli.main(["--ckpt-a", str(checkpoint), "--ckpt-b", str(checkpoint), "--data", data, "--loss", "mse",
                                 "--methods", "linear,string", "--string-steps", "2", "--string-points", "3", "--batching", "vmap",
                                 "--points", "2", "--out", str(out), "--quiet"]) == 0  # the string: mse under vmap
    model, _ = load_checkpoint(checkpoint)
    arrays = np.load(tmp_path / "four.npz")
    with torch.no_grad():
        outputs = model(torch.from_numpy(arrays["x_train"]))
    mse = float(((outputs - torch.eye(4)[torch.from_numpy(arrays["y_train"])]) ** 2).mean())
    with h5py.File(out, "r") as store:
        group = next(iter(store["interpolation"].values()))
        assert group.attrs["loss"] == "mse" and group["linear"].attrs["train_a_loss"] == pytest.approx(mse, rel=1e-5)
        assert group["string"]["train_loss"][0] == pytest.approx(mse, rel=1e-5)
    rows = {}
    for loss in ("ce", "mse"):
        path = tmp_path / f"sharp_{loss}.h5"
        assert sharpness_cli.main(["--ckpt", str(checkpoint), "--data", data, "--loss", loss, *SHARP, "--out", str(path)]) == 0
        with h5py.File(path, "r") as store:
            rows[loss] = float(store["sharpness/checkpoints/curve/train_loss"][0])
    assert rows["mse"] == pytest.approx(mse, rel=1e-5) and rows["ce"] != pytest.approx(mse, rel=1e-2)


def test_sharpness_probes_the_fake_training_set_the_model_was_trained_on(tmp_path):
    """Issue 16: sharpness keeps one test example (n_test=1); the training labels must not change with it."""
    out = tmp_path / "r"
    assert train_cli.main(["--data", "fake", "--n-train", "40", "--n-test", "64", *TINY, "--out", str(out)]) == 0
    attrs, _, _ = _history(out, "cnn")
    path = tmp_path / "sharp.h5"
    assert sharpness_cli.main(["--ckpt", str(out / attrs["checkpoint"]), "--data", "fake", "--n-train", "40", *SHARP,
                               "--out", str(path)]) == 0
    with h5py.File(path, "r") as store:
        assert float(store["sharpness/checkpoints/curve/train_loss"][0]) == pytest.approx(attrs["final_train_loss"], rel=1e-5)


def test_one_line_errors_and_nothing_written(tmp_path, user_module, four_class_checkpoint, capsys):
    checkpoint, ten = four_class_checkpoint
    out = tmp_path / "never"
    cases = [
        (train_cli, ["--data", f"npz:{tmp_path / 'missing.npz'}", *TINY, "--out", str(out)],
         r"^error: --data npz:\S+missing.npz: no file \S+; give the path of an .npz file"),
        (train_cli, ["--data", f"{user_module}:three", *TINY, "--out", str(out)],
         r"^error: --data needle_cli_user:three returned a tuple of length 3; return \(x_train, y_train, x_test, y_test\)"),
        (train_cli, ["--data", f"folder:{tmp_path / 'nowhere'}", *TINY, "--out", str(out)], r"^error: --data folder:\S+: no folder"),
        (train_cli, ["--data", ten, "--loss", f"{user_module}:not_callable", *TINY, "--out", str(out)],
         r"^error: --loss needle_cli_user:not_callable: 'needle_cli_user:not_callable' is a int, not a function$"),
        (train_cli, ["--data", ten, "--loss", "no_such_module_xyz:f", *TINY, "--out", str(out)],
         r"^error: --loss no_such_module_xyz:f: cannot import module 'no_such_module_xyz'"),
        (train_cli, ["--data", ten, "--init", str(checkpoint), *TINY, "--out", str(out)],
         r"^error: --init \S+final.pt outputs 4 class scores but npz:\S+ten.npz has 10 classes \(labels 0..9\)"),
        (train_cli, ["--data", "fake", "--init", str(checkpoint), *TINY, "--out", str(out)],
         r"^error: --init \S+ cannot take fake inputs of shape \(1, 40\)"),
        (interpolate_cli, ["--ckpt-a", str(checkpoint), "--ckpt-b", str(checkpoint), "--data", ten, "--out", str(out / "p.h5"), "--quiet"],
         r"^error: checkpoint \S+final.pt outputs 4 class scores but npz:\S+ten.npz has 10 classes"),
        (interpolate_cli, ["--ckpt-a", str(checkpoint), "--ckpt-b", str(checkpoint), "--data", ten, "--loss", "mse",
                           "--out", str(out / "p.h5"), "--quiet"],
         r"^error: --methods output scores the averaged outputs by their cross entropy, not by --loss mse; choose --methods linear,string"),
        (sharpness_cli, ["--ckpt", str(checkpoint), "--data", ten, *SHARP, "--out", str(out / "s.h5")],
         r"^error: checkpoint \S+final.pt outputs 4 class scores but npz:\S+ten.npz has 10 classes"),
    ]
    for cli, argv, message in cases:
        with pytest.raises(SystemExit, match=message) as err:
            cli.main(argv)
        assert "\n" not in str(err.value.code), argv
        assert not out.exists(), argv
    for flag, value, message in (("--loss", "hinge", "expected ce, mse or package.module:function, got 'hinge'"),
                                 ("--data", "mnist", "expected mnist1d, digits, cifar10, cifar100, fake, npz:PATH, folder:PATH")):
        with pytest.raises(SystemExit) as err:
            train_cli.main([flag, value, *TINY, "--out", str(out)])
        assert err.value.code == 2 and message in capsys.readouterr().err
