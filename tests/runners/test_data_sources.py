"""The user's own data (npz:, folder:, import paths), --loss, the model/data fit check, and fake data's independent splits."""

from __future__ import annotations

import re
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from runners._engine import check_model, load_data, mse_one_hot, resolve_loss

MODULE = "needle_user_data"  # written to tmp_path by the fixture, imported through sys.path


def _arrays(n_train=12, n_test=6, shape=(1, 8), classes=3, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.normal(size=(n_train, *shape)).astype(np.float32),
        "y_train": np.arange(n_train) % classes,
        "x_test": rng.normal(size=(n_test, *shape)).astype(np.float32),
        "y_test": np.arange(n_test) % classes,
    }


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module of data functions in tmp_path, importable as MODULE."""
    (tmp_path / f"{MODULE}.py").write_text(textwrap.dedent('''
        import numpy as np
        import torch

        def arrays():
            rng = np.random.default_rng(1)
            return rng.normal(size=(10, 2, 5)), np.arange(10) % 4, rng.normal(size=(4, 2, 5)), np.array([0, 1, 2, 3])

        class Pairs(torch.utils.data.Dataset):
            def __init__(self, n):
                self.n = n
            def __len__(self):
                return self.n
            def __getitem__(self, i):
                return torch.full((1, 6), float(i)), torch.tensor(i % 2)

        def datasets():
            return Pairs(8), Pairs(3)

        def three():
            return 1, 2, 3

        def broken():
            raise KeyError("no such split")

        def ragged():
            return [np.zeros(3), np.zeros(4)], [0, 1], [np.zeros(3)], [0]

        not_callable = 5
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield MODULE
    sys.modules.pop(MODULE, None)


def test_npz_source_keeps_arrays_and_takes_classes_and_shape_from_the_data(tmp_path):
    arrays = _arrays(classes=3)
    np.savez(tmp_path / "set.npz", **arrays)
    data = load_data(f"npz:{tmp_path / 'set.npz'}", n_test=4)
    assert data.input_shape == (1, 8) and data.num_classes == 3 and data.name == f"npz:{tmp_path / 'set.npz'}"
    assert torch.equal(data.x_train, torch.from_numpy(arrays["x_train"]))  # used as given: no standardisation
    assert data.y_train.dtype == torch.int64 and len(data.y_test) == 4


def test_import_path_returning_arrays(user_module):
    data = load_data(f"{user_module}:arrays")
    assert data.input_shape == (2, 5) and data.num_classes == 4 and data.x_train.dtype == torch.float32


def test_import_path_returning_map_style_datasets(user_module):
    data = load_data(f"{user_module}:datasets")
    assert data.input_shape == (1, 6) and data.num_classes == 2
    assert data.x_train[:, 0, 0].tolist() == list(range(8)) and data.y_test.tolist() == [0, 1, 0]


def _write_images(root, sizes: dict[str, dict[str, list[tuple[int, int]]]]) -> None:
    from PIL import Image

    for split, classes in sizes.items():
        for name, shapes in classes.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i, (h, w) in enumerate(shapes):
                pixels = np.full((h, w, 3), 40 * i + (100 if name == "dog" else 0), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")


def test_folder_source_reads_imagefolder_with_totensor_only(tmp_path):
    _write_images(tmp_path, {"train": {"cat": [(5, 4)] * 3, "dog": [(5, 4)] * 2}, "test": {"cat": [(5, 4)], "dog": [(5, 4)]}})
    (tmp_path / "train" / "cat" / ".DS_Store").write_bytes(b"\0")  # hidden files are skipped
    data = load_data(f"folder:{tmp_path}")
    assert data.input_shape == (3, 5, 4) and data.num_classes == 2
    assert data.y_train.tolist() == [0, 0, 0, 1, 1] and data.y_test.tolist() == [0, 1]
    # ToTensor: RGB in [0, 1], pixel value / 255, no resizing or normalisation
    assert torch.allclose(data.x_train[1], torch.full((3, 5, 4), 40 / 255)) and float(data.x_train[3].max()) == pytest.approx(100 / 255)


@pytest.mark.parametrize("make,message", [
    (lambda p: None, r"--data npz:\S+: no file \S+missing.npz; give the path of an .npz file with arrays x_train"),
    (lambda p: np.savez(p, x_train=np.ones((2, 3)), y_train=[0, 1], x_test=np.ones((1, 3))),
     r"lacks the array\(s\) y_test \(it holds x_train, y_train, x_test\); save x_train, y_train, x_test, y_test"),
    (lambda p: np.savez(p, **{**_arrays(), "y_train": np.arange(11) % 3}),
     r"x_train has 12 examples but y_train has 11; give one label per input"),
    (lambda p: np.savez(p, **{**_arrays(), "y_test": np.full(6, 0.5)}),
     r"y_test must hold integer class labels 0, 1, 2, \.\.\., got dtype torch.float64"),
    (lambda p: np.savez(p, **{**_arrays(), "y_train": -(np.arange(12) % 3)}), r"y_train holds the negative label -2"),
    (lambda p: np.savez(p, **{**_arrays(), "y_test": np.full(6, 10**9)}),
     r"y_test holds the label 1000000000; labels are class indices 0 .. classes - 1 \(map ids to indices"),
    (lambda p: np.savez(p, **{**_arrays(), "y_train": np.arange(12) % 2 == 0}), r"y_train must hold integer class labels 0, 1, 2, \.\.\., got dtype torch.bool$"),
    (lambda p: np.savez(p, **{**_arrays(), "y_train": np.eye(3)[np.arange(12) % 3]}),
     r"y_train has shape \(12, 3\); labels are class indices of shape \(N,\) \(one-hot labels: take their argmax\)"),
    (lambda p: np.savez(p, **{**_arrays(), "x_test": np.ones((6, 1, 9))}),
     r"training inputs have shape \(1, 8\) but test inputs \(1, 9\); both splits need one input shape"),
    (lambda p: np.savez(p, **{**_arrays(), "x_train": np.full((12, 1, 8), np.nan)}), r"x_train holds NaN or infinite values"),
    (lambda p: np.savez(p, **{**_arrays(), "x_train": np.array([{"a": 1}] * 12)}),
     r"is not a readable .npz file of numeric arrays \(ValueError: Object arrays cannot be loaded"),
    (lambda p: p.write_text("not an archive"), r"is not a readable .npz file of numeric arrays"),
])
def test_npz_malformed_is_one_line(tmp_path, make, message):
    path = tmp_path / ("missing.npz" if "no file" in message else "set.npz")
    make(path)
    with pytest.raises((ValueError, FileNotFoundError), match=message) as err:
        load_data(f"npz:{path}")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("function,message", [
    ("three", r"returned a tuple of length 3; return \(x_train, y_train, x_test, y_test\) or \(train_dataset, test_dataset\)"),
    ("broken", r"calling it raised KeyError: 'no such split'"),
    ("ragged", r"x_train is not numeric \(list of dtype object\); give numbers as a tensor or a NumPy array"),
    ("not_callable", r"is a int, not a function"),
    ("nothing", r"module 'needle_user_data' has no attribute 'nothing'; check the name after ':'"),
])
def test_import_path_malformed_is_one_line(user_module, function, message):
    with pytest.raises(ValueError, match=message) as err:
        load_data(f"{user_module}:{function}")
    assert "\n" not in str(err.value) and str(err.value).startswith(f"--data {user_module}:{function}")


def test_unknown_module_says_pythonpath():
    with pytest.raises(ValueError, match=r"--data no_such_module_xyz:load: cannot import module 'no_such_module_xyz' .*PYTHONPATH"):
        load_data("no_such_module_xyz:load")


def test_folder_malformed_is_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no folder .*absent; the layout is"):
        load_data(f"folder:{tmp_path / 'absent'}")
    _write_images(tmp_path, {"train": {"cat": [(4, 4)], "dog": [(4, 4)]}})
    with pytest.raises(FileNotFoundError, match=r"test is missing; the layout is .*/train/<class>/<image>"):
        load_data(f"folder:{tmp_path}")
    _write_images(tmp_path, {"test": {"cat": [(4, 4)]}})
    with pytest.raises(ValueError, match=r"train has the class folders \['cat', 'dog'\] but test \['cat'\]"):
        load_data(f"folder:{tmp_path}")
    _write_images(tmp_path, {"test": {"dog": [(4, 4)]}})
    (tmp_path / "train" / "dog" / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"notes.txt is not an image that PIL can read \(UnidentifiedImageError\)"):
        load_data(f"folder:{tmp_path}")
    (tmp_path / "train" / "dog" / "notes.txt").unlink()
    _write_images(tmp_path, {"test": {"dog": [(4, 4), (6, 4)]}})
    with pytest.raises(ValueError, match=r"1.png is 3x6x4 but \S+ is 3x4x4; all images must share one size"):
        load_data(f"folder:{tmp_path}")


def test_fake_splits_do_not_depend_on_each_others_size():
    """Issue 16: sharpness loads n_test=1 and must probe the training set the model was trained on."""
    trained = load_data("fake", seed=5, n_train=100, n_test=256, input_shape=(1, 7), num_classes=4)
    probed = load_data("fake", seed=5, n_train=100, n_test=1, input_shape=(1, 7), num_classes=4)
    assert torch.equal(trained.x_train, probed.x_train) and torch.equal(trained.y_train, probed.y_train)
    fewer = load_data("fake", seed=5, n_train=30, n_test=5, input_shape=(1, 7), num_classes=4)
    assert torch.equal(fewer.x_train, trained.x_train[:30]) and torch.equal(fewer.y_test, trained.y_test[:5])
    # the test inputs are another stream, not a continuation of the training inputs
    assert not any(torch.equal(trained.x_test[0], x) for x in trained.x_train)
    assert len(set(trained.y_train.tolist())) == 4  # every class occurs: the teacher is not degenerate


def test_mse_is_the_mean_squared_error_against_one_hot_targets():
    outputs = torch.tensor([[0.5, 0.0, 2.0], [1.0, 1.0, 1.0]])
    expected = ((0.5 - 1) ** 2 + 0 + 2 ** 2 + 1 + 0 + 1) / 6  # one-hot rows (1,0,0) and (0,1,0)
    assert float(mse_one_hot(outputs, torch.tensor([0, 1]))) == pytest.approx(expected)
    batched = torch.func.vmap(lambda o: mse_one_hot(o, torch.tensor([0, 1])))(torch.stack([outputs, outputs]))
    assert torch.allclose(batched, torch.full((2,), expected))  # usable under vmap (string, Hessian products)


def test_resolve_loss_names_and_errors(user_module):
    assert resolve_loss("ce")(torch.zeros(2, 4), torch.tensor([0, 3])) == pytest.approx(np.log(4))
    assert resolve_loss("torch.nn.functional:multi_margin_loss") is torch.nn.functional.multi_margin_loss
    with pytest.raises(ValueError, match=r"loss must be ce, mse or an import path 'package.module:function', got 'hinge'"):
        resolve_loss("hinge")
    with pytest.raises(ValueError, match=r"--loss needle_user_data:not_callable: 'needle_user_data:not_callable' is a int"):
        resolve_loss(f"{user_module}:not_callable")


def test_check_model_one_line_per_misfit():
    data = load_data("fake", n_train=4, n_test=2, input_shape=(1, 6), num_classes=10)
    four = nn.Sequential(nn.Flatten(), nn.Linear(6, 4))
    with pytest.raises(ValueError, match=r"^ckpt outputs 4 class scores but fake has 10 classes \(labels 0..9\); pass the data set"):
        check_model(data, four, what="ckpt")
    with pytest.raises(ValueError, match=r"^ckpt cannot take fake inputs of shape \(1, 6\) \(.*\); pass the data set it was trained on"):
        check_model(data, nn.Sequential(nn.Flatten(), nn.Linear(5, 10)), what="ckpt")
    with pytest.raises(ValueError, match=r"ckpt gives \(1, 1, 10\) for a batch of one input; a classifier returns scores"):
        check_model(data, nn.Linear(6, 10), what="ckpt")
    wide = nn.Sequential(nn.Flatten(), nn.Linear(6, 12)).train()
    check_model(data, wide, what="ckpt", loss_fn=resolve_loss("mse"))  # more outputs than classes: fine
    assert wide.training  # its mode is given back
    with pytest.raises(ValueError, match=r"the loss returns \(1,\), not a scalar tensor; average it over the batch"):
        check_model(data, wide, what="ckpt", loss_fn=lambda o, t: o.sum(1))
    with pytest.raises(ValueError, match=re.escape("the loss fails on ckpt's outputs (1, 12) and int64 targets (1,) (RuntimeError")):
        check_model(data, wide, what="ckpt", loss_fn=lambda o, t: o @ t)
