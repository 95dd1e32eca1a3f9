"""Data sets: shapes, determinism, offline caching, CIFAR from pickles, augmentation, bad input."""

import pickle

import numpy as np
import pytest
import torch

from runners._engine.data import load_data, random_crop_flip


def test_mnist1d_is_generated_once_and_cached(tmp_path):
    first = load_data("mnist1d", root=tmp_path, n_train=100)
    assert (tmp_path / "mnist1d.npz").is_file()
    state = np.random.get_state()[1].copy()
    again = load_data("mnist1d", root=tmp_path)
    assert np.array_equal(np.random.get_state()[1], state)
    assert first.input_shape == (1, 40) and first.num_classes == 10
    assert again.x_train.shape == (4000, 1, 40) and again.x_test.shape == (1000, 1, 40)
    assert torch.equal(first.x_train, again.x_train[:100]) and first.x_train.dtype == torch.float32
    assert abs(float(again.x_train.mean())) < 0.05 and abs(float(again.x_train.std()) - 1) < 0.05


def test_digits_are_2d_standardised_images():
    data = load_data("digits")
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10
    assert len(data.y_train) + len(data.y_test) == 1797
    assert abs(float(data.x_train.mean())) < 1e-5 and abs(float(data.x_train.std()) - 1) < 1e-3


def test_fake_is_deterministic_and_learnable_shape():
    a = load_data("fake", seed=3, input_shape=(2, 5), num_classes=4, n_train=20, n_test=8)
    b = load_data("fake", seed=3, input_shape=(2, 5), num_classes=4, n_train=20, n_test=8)
    c = load_data("fake", seed=4, input_shape=(2, 5), num_classes=4, n_train=20, n_test=8)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    assert a.x_train.shape == (20, 2, 5) and int(a.y_train.max()) < 4


def test_batches_are_reiterable_and_cover_the_split():
    data = load_data("fake", n_train=10, n_test=7)
    batches = data.batches("test", 3)
    assert [len(y) for _, y in batches] == [3, 3, 1]
    assert torch.equal(torch.cat([x for x, _ in batches]), data.x_test)
    assert [len(y) for _, y in batches] == [3, 3, 1]
    shuffled = data.shuffled_batches(4, generator=torch.Generator().manual_seed(0))
    assert sorted(torch.cat([y for _, y in shuffled]).tolist()) == sorted(data.y_train.tolist())


def _fake_cifar(root, name):
    rng = np.random.default_rng(0)
    if name == "cifar10":
        folder, files, key = root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], b"labels"
    else:
        folder, files, key = root / "cifar-100-python", ["train", "test"], b"fine_labels"
    folder.mkdir(parents=True)
    for file in files:
        entry = {b"data": rng.integers(0, 256, (6, 3072), dtype=np.uint8), key: rng.integers(0, 10, 6).tolist()}
        with open(folder / file, "wb") as handle:
            pickle.dump(entry, handle)


@pytest.mark.parametrize("name,n_train,classes", [("cifar10", 30, 10), ("cifar100", 6, 100)])
def test_cifar_reads_python_pickles(tmp_path, name, n_train, classes):
    _fake_cifar(tmp_path, name)
    data = load_data(name, root=tmp_path, augment=True)
    assert data.input_shape == (3, 32, 32) and data.num_classes == classes
    assert len(data.y_train) == n_train and len(data.y_test) == 6
    assert torch.allclose(data.x_train.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    (x, _), *_ = data.shuffled_batches(4, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, 3, 32, 32)


def test_cifar_absent_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar10 not found: missing .*data_batch_1; pass download=True \(--download\)"):
        load_data("cifar10", root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"cifar100 needs root= \(--data-root\)"):
        load_data("cifar100")


def test_bad_names_and_sizes():
    with pytest.raises(ValueError, match="unknown data set 'mnist'; expected one of mnist1d, digits, cifar10, cifar100, fake"):
        load_data("mnist")
    with pytest.raises(ValueError, match="n_train must be a positive integer or None, got 0"):
        load_data("fake", n_train=0)
    with pytest.raises(ValueError, match="augment=True crops and flips 2-D images"):
        load_data("fake", augment=True)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        load_data("fake").batches("train", 0)


def test_crop_flip_moves_pixels_only():
    x = torch.randn(64, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    y = random_crop_flip(x, padding=2, generator=torch.Generator().manual_seed(1))
    assert y.shape == x.shape
    # Every output pixel is an input pixel of the same image and channel, or padding.
    for b in range(4):
        for c in range(2):
            values = set(x[b, c].flatten().tolist()) | {0.0}
            assert set(y[b, c].flatten().tolist()) <= values
    same = random_crop_flip(x, padding=0, generator=torch.Generator().manual_seed(2))
    flipped = (same != x).flatten(1).any(1)
    assert torch.equal(same[flipped], x[flipped].flip(-1)) and 0 < int(flipped.sum()) < 64
