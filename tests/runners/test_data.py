"""Data sets: shapes, determinism, offline caching, CIFAR from pickles, augmentation, bad input."""

import pickle

import numpy as np
import pytest
import torch

from runners._engine.data import load_data, random_crop_flip


@pytest.fixture(scope="module")
def mnist1d_root(tmp_path_factory):
    """One cache folder for the module: the standard set, then the enlarged one, generated once each."""
    root = tmp_path_factory.mktemp("mnist1d")
    standard = load_data("mnist1d", root=root, test_size=1000)
    assert sorted(p.name for p in root.iterdir()) == ["mnist1d.npz"]
    return root, standard


def test_mnist1d_is_generated_once_and_cached(mnist1d_root):
    root, standard = mnist1d_root
    first = load_data("mnist1d", root=root, n_train=100)
    assert sorted(p.name for p in root.iterdir()) == ["mnist1d.npz", "mnist1d_test6000.npz"]
    state = np.random.get_state()[1].copy()
    again = load_data("mnist1d", root=root)
    assert np.array_equal(np.random.get_state()[1], state)
    assert first.input_shape == (1, 40) and first.num_classes == 10
    assert again.x_train.shape == (4000, 1, 40) and again.x_test.shape == (6000, 1, 40)
    assert torch.equal(first.x_train, again.x_train[:100]) and first.x_train.dtype == torch.float32
    assert abs(float(again.x_train.mean())) < 0.05 and abs(float(again.x_train.std()) - 1) < 0.05


def test_mnist1d_enlarged_test_set_keeps_the_standard_sets_and_adds_new_sequences(mnist1d_root):
    root, standard = mnist1d_root
    from mnist1d.data import get_dataset_args, make_dataset

    reference = make_dataset(get_dataset_args())  # the standard arguments, as the package's users get it
    assert standard.x_train.shape == (4000, 1, 40) and standard.x_test.shape == (1000, 1, 40)
    assert np.allclose(standard.x_train[:, 0].numpy(), reference["x"]) and np.array_equal(standard.y_train.numpy(), reference["y"])
    assert np.allclose(standard.x_test[:, 0].numpy(), reference["x_test"])
    enlarged = load_data("mnist1d", root=root)
    assert torch.equal(enlarged.x_train, standard.x_train) and torch.equal(enlarged.y_train, standard.y_train)
    assert torch.equal(enlarged.x_test[:1000], standard.x_test) and torch.equal(enlarged.y_test[:1000], standard.y_test)
    new, y_new = enlarged.x_test[1000:, 0], enlarged.y_test[1000:]
    assert len(new) == 5000 and 100 / len(enlarged.y_test) <= 0.02  # one sample, in points
    assert torch.bincount(y_new, minlength=10).tolist() == [500] * 10  # make_dataset's balanced classes
    # The same process and the same standardisation: statistics of the new sequences match the training set's.
    assert abs(float(new.mean() - standard.x_train.mean())) < 0.05 and abs(float(new.std() / standard.x_train.std()) - 1) < 0.05
    assert load_data("mnist1d", root=root, n_test=1500).x_test.shape == (1500, 1, 40)


def test_mnist1d_new_test_sequences_are_disjoint_from_the_training_ones(mnist1d_root):
    root, _ = mnist1d_root
    data = load_data("mnist1d", root=root)
    train = {row.tobytes() for row in data.x_train[:, 0].numpy()}
    new = [row.tobytes() for row in data.x_test[1000:, 0].numpy()]
    assert not train & set(new)
    assert not {row.tobytes() for row in data.x_test[:1000, 0].numpy()} & set(new) and len(set(new)) == len(new)
    # Not merely float noise apart: no new sequence lies within 1e-3 of a training one (max abs difference).
    distance = torch.cdist(data.x_test[1000:, 0].double(), data.x_train[:, 0].double(), p=float("inf"))
    assert float(distance.min()) > 1e-3


def test_mnist1d_cache_of_each_size_is_its_own_file(mnist1d_root, monkeypatch):
    root, standard = mnist1d_root
    load_data("mnist1d", root=root)
    import runners._engine.data as data_module

    def no_generation(*args, **kwargs):
        raise AssertionError("generated again instead of reading the cache")

    monkeypatch.setattr(data_module, "_mnist1d_raw", no_generation)
    assert load_data("mnist1d", root=root).x_test.shape == (6000, 1, 40)  # served by mnist1d_test6000.npz
    assert load_data("mnist1d", root=root, test_size=1000).x_test.shape == (1000, 1, 40)
    with pytest.raises(AssertionError, match="generated again"):  # another size: not served by either file
        load_data("mnist1d", root=root, test_size=2000)


def test_mnist1d_test_size_checks():
    with pytest.raises(ValueError, match="test_size must be an integer of at least 1000 .*got 999; use n_test to take fewer"):
        load_data("mnist1d", test_size=999)
    with pytest.raises(ValueError, match="test_size applies to mnist1d only; use n_test to shorten the test split of fake"):
        load_data("fake", test_size=6000)


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
