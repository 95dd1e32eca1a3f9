"""Data sets as in-memory tensors: MNIST-1D, scikit-learn digits, CIFAR-10/100, fake data and the user's own.

Every set is small enough to live in memory, so a :class:`Dataset` is a frozen bundle of four tensors
and batches are views: the same batches can be iterated any number of times (what the landscape
probes need), and training shuffles with an explicit generator (what resuming needs).

* ``mnist1d`` (default): the MNIST-1D benchmark (Greydanus, 2020) made offline by the ``mnist1d``
  package: the 4000 training sequences (length 40) of ``make_dataset(get_dataset_args())``, and a
  test set of :data:`MNIST1D_TEST_SIZE` = 6000 sequences -- the standard 1000 test sequences followed
  by 5000 more drawn from the same process (the standard arguments with seed 43 instead of 42,
  standardised with the standard set's mean and std), so that one test sample is 0.017 points, not 0.1
  (the effects measured are 1-2 points). ``test_size=1000`` gives the standard test set alone.
  Generated once (~2-8 s) and cached as ``.npz`` (``mnist1d.npz``: the standard set;
  ``mnist1d_test<size>.npz``: an enlarged one).
* ``digits``: scikit-learn's bundled 8x8 digits (1797 images, 2-D input (1, 8, 8)); a fixed split
  of 1437 / 360, standardised with the training mean and std.
* ``cifar10`` / ``cifar100``: the python-pickle version read from ``root``
  (``cifar-10-batches-py`` / ``cifar-100-python``), downloaded by torchvision only when asked;
  standardised per channel with the training statistics; optional augmentation.
* ``fake``: Gaussian inputs with labels given by a fixed random linear map (so that it is
  learnable), deterministic in ``seed``, of any shape. The map, the training inputs and the test
  inputs come from three independent streams of ``seed``, each drawn in fixed blocks, so a split's
  examples do not depend on the other split's size and ``n_train`` keeps a prefix.
* the user's own (:mod:`.sources`): ``npz:PATH``, ``folder:PATH`` (``ImageFolder``) or an import path
  ``package.module:function``; classes and input shape come from the data.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from runners._engine.sources import is_user_source, load_source

__all__ = ["Dataset", "load_data", "default_cache", "DataName", "MNIST1D_TEST_SIZE"]

DataName = Literal["mnist1d", "digits", "cifar10", "cifar100", "fake"]  # or npz:PATH, folder:PATH, package.module:function
_NAMES = ("mnist1d", "digits", "cifar10", "cifar100", "fake")
_FAKE_BLOCK = 64  # examples per draw: a split's first n examples are the same whatever its size
MNIST1D_TEST_SIZE = 6000  # >= 5000 sequences: one test sample is <= 0.02 points
_MNIST1D_STANDARD_TEST = 1000  # make_dataset's test split (20% of 5000)
_CIFAR = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", b"labels", 10),
    "cifar100": ("cifar-100-python", ["train"], "test", b"fine_labels", 100),
}


def default_cache() -> Path:
    """Where generated data sets are cached when no root is given: ``$NEEDLE_CACHE`` or ``~/.cache/needle``."""
    return Path(os.environ.get("NEEDLE_CACHE", Path.home() / ".cache" / "needle"))


@dataclass(frozen=True)
class Dataset:
    """A classification data set held in memory.

    Attributes:
        x_train, y_train, x_test, y_test: float32 inputs ``(N, *input_shape)`` and int64 labels.
        input_shape: one input's shape without batch, e.g. ``(1, 40)`` or ``(3, 32, 32)``.
        num_classes: number of labels (user sources: the largest label plus one, or the class folders).
        name: the data set's name (a user source as given, e.g. ``npz:data/set.npz``).
        augment: whether :meth:`shuffled_batches` may augment (random crop with 4-pixel zero
            padding and horizontal flip, for 2-D images).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    input_shape: tuple[int, ...]
    num_classes: int
    name: str
    augment: bool = field(default=False)

    def batches(self, split: Literal["train", "test"], batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The split in order, cut into batches (the last may be smaller); re-iterable.

        Example:
            >>> data = load_data("fake", n_train=10, n_test=4, input_shape=(1, 6))
            >>> [len(y) for _, y in data.batches("train", 4)]
            [4, 4, 2]
        """
        x, y = self._split(split)
        _check_batch_size(batch_size)
        return list(zip(x.split(batch_size), y.split(batch_size)))

    def shuffled_batches(self, batch_size: int, *, generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One training epoch: a permutation drawn from ``generator``, augmented if ``self.augment``."""
        _check_batch_size(batch_size)
        order = torch.randperm(len(self.y_train), generator=generator)
        out = []
        for index in order.split(batch_size):
            x = self.x_train[index]
            if self.augment:
                x = random_crop_flip(x, padding=4, generator=generator)
            out.append((x, self.y_train[index]))
        return out

    def _split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split == "train":
            return self.x_train, self.y_train
        if split == "test":
            return self.x_test, self.y_test
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def random_crop_flip(x: torch.Tensor, *, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Random crops of zero-padded images and random horizontal flips, for a whole batch at once.

    Args:
        x: images ``(B, C, H, W)``.
        padding: zeros added on every side before cropping back to ``H x W``.
        generator: source of the offsets and flips.

    Example:
        >>> x = torch.arange(16.).view(1, 1, 4, 4)
        >>> y = random_crop_flip(x, padding=0, generator=torch.Generator().manual_seed(0))
        >>> torch.equal(y, x) or torch.equal(y, x.flip(-1))
        True
    """
    if x.dim() != 4:
        raise ValueError(f"random_crop_flip takes images (B, C, H, W), got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = dx[:, None] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]
    return padded[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


@contextlib.contextmanager
def _global_rngs_kept() -> Iterator[None]:
    """The ``mnist1d`` package seeds numpy's and Python's global RNGs; give callers theirs back."""
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.npz")  # a killed run never leaves a half-written cache
    np.savez(partial, **arrays)
    os.replace(partial, path)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as cached:
        return {key: cached[key] for key in ("x", "y", "x_test", "y_test")}


def _mnist1d_standard(root: Path) -> dict[str, np.ndarray]:
    path = root / "mnist1d.npz"
    if not path.is_file():
        from mnist1d.data import get_dataset_args, make_dataset

        with _global_rngs_kept():
            raw = make_dataset(get_dataset_args())
        _save_npz(path, {key: raw[key] for key in ("x", "y", "x_test", "y_test")})
    return _read_npz(path)


def _mnist1d_raw(seed: int, num_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """``make_dataset``'s sequences before it standardises and splits them: its loop and RNG draws, any seed."""
    from mnist1d.data import ObjectView, get_dataset_args, get_templates, set_seed, transform

    args = ObjectView({**get_dataset_args(as_dict=True), "seed": seed, "num_samples": num_samples})
    templates = get_templates()
    set_seed(seed)
    xs, ys = [], []
    for label in range(len(templates["y"])):
        for _ in range(num_samples // len(templates["y"])):
            x, _ = transform(templates["x"][label], templates["t"], args)
            xs.append(x)
            ys.append(templates["y"][label])
    order = np.random.permutation(len(ys))
    return np.stack(xs)[order], np.stack(ys)[order]


def _mnist1d_enlarged(standard: dict[str, np.ndarray], test_size: int) -> dict[str, np.ndarray]:
    """The standard set with ``test_size - 1000`` new test sequences: standard arguments, seed 42 + 1."""
    from mnist1d.data import get_dataset_args

    args, extra = get_dataset_args(), test_size - _MNIST1D_STANDARD_TEST
    with _global_rngs_kept():
        raw, _ = _mnist1d_raw(args.seed, args.num_samples)
        # make_dataset standardises with its 5000 sequences' statistics: the new ones get the same.
        mean, std = raw.mean(), raw.std()
        if not np.allclose((raw - mean) / std, np.concatenate([standard["x"], standard["x_test"]])):
            raise RuntimeError("this mnist1d version draws the standard set differently from make_dataset's loop; "
                               "pass test_size=1000 or install the mnist1d version of the project's requirements")
        x_new, y_new = _mnist1d_raw(args.seed + 1, -(-extra // 10) * 10)  # whole classes, then cut
    return {"x": standard["x"], "y": standard["y"],
            "x_test": np.concatenate([standard["x_test"], ((x_new - mean) / std)[:extra]]),
            "y_test": np.concatenate([standard["y_test"], y_new[:extra]])}


def _mnist1d(root: Path, test_size: int) -> tuple[np.ndarray, ...]:
    if test_size == _MNIST1D_STANDARD_TEST:
        arrays = _mnist1d_standard(root)
    else:
        path = root / f"mnist1d_test{test_size}.npz"  # never the standard file: it holds 1000 test sequences
        if not path.is_file():
            _save_npz(path, _mnist1d_enlarged(_mnist1d_standard(root), test_size))
        arrays = _read_npz(path)
    return arrays["x"][:, None, :], arrays["y"], arrays["x_test"][:, None, :], arrays["y_test"]


def _digits() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = digits.images[:, None, :, :], digits.target
    split = int(0.8 * len(y))  # the bundled order is already mixed across classes
    return x[:split], y[:split], x[split:], y[split:]


def _cifar(name: str, root: Path, download: bool) -> tuple[np.ndarray, ...]:
    folder, train_files, test_file, label_key, _ = _CIFAR[name]
    base = root / folder
    files = [base / f for f in [*train_files, test_file]]
    if not all(f.is_file() for f in files) and download:
        import torchvision

        loader = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        loader(root=str(root), train=True, download=True)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{name} not found: missing {missing[0]}; pass download=True (--download) to fetch it "
            f"with torchvision into {root}, or extract the python version of the archive there"
        )

    def read(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for path in paths:
            with open(path, "rb") as handle:
                entry = pickle.load(handle, encoding="bytes")
            xs.append(np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(entry[label_key], dtype=np.int64))
        return np.concatenate(xs), np.concatenate(ys)

    x, y = read(files[:-1])
    x_test, y_test = read(files[-1:])
    return x, y, x_test, y_test


def _fake(input_shape: tuple[int, ...], num_classes: int, n_train: int, n_test: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Teacher, training and test inputs from three independent streams of ``seed`` (module docstring)."""
    teacher_seed, train_seed, test_seed = (int(s.generate_state(1, np.uint64)[0]) for s in np.random.SeedSequence(seed).spawn(3))
    teacher = torch.randn(int(np.prod(input_shape)), num_classes, generator=torch.Generator().manual_seed(teacher_seed))

    def split(stream_seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(stream_seed)
        # torch.randn(n, ...) draws differently for different n: fixed-size blocks keep a prefix a prefix.
        x = torch.cat([torch.randn(_FAKE_BLOCK, *input_shape, generator=generator) for _ in range(-(-n // _FAKE_BLOCK))])[:n]
        return x, (x.flatten(1) @ teacher).argmax(1)

    return (*split(train_seed, n_train), *split(test_seed, n_test))


def _standardise(x: np.ndarray, x_test: np.ndarray, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x, x_test = x.astype(np.float32), x_test.astype(np.float32)
    axes = (0, *range(2, x.ndim)) if per_channel else None
    mean = x.mean(axis=axes, keepdims=per_channel)
    std = x.std(axis=axes, keepdims=per_channel)
    return torch.from_numpy((x - mean) / std), torch.from_numpy((x_test - mean) / std)


def load_data(
    name: DataName | str = "mnist1d",
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    seed: int = 0,
    n_train: int | None = None,
    n_test: int | None = None,
    test_size: int | None = None,
    augment: bool = False,
    input_shape: tuple[int, ...] = (1, 40),
    num_classes: int = 10,
) -> Dataset:
    """Load a data set into memory.

    Args:
        name: ``mnist1d``, ``digits``, ``cifar10``, ``cifar100``, ``fake``, or a user source:
            ``npz:PATH``, ``folder:PATH``, ``package.module:function`` (:mod:`.sources`).
        root: folder of the data files (CIFAR) or of the cache (MNIST-1D); default
            :func:`default_cache`. Required for CIFAR.
        download: let torchvision download CIFAR into ``root``; nothing is downloaded otherwise.
        seed: seed of the ``fake`` data (the other sets are fixed).
        n_train, n_test: keep only the first examples of each split (default: all; ``fake``: 512/256).
        test_size: MNIST-1D only: sequences in its test set, at least 1000 (default
            :data:`MNIST1D_TEST_SIZE`): the standard 1000, then new ones from the same process
            (module docstring); ``1000`` is the standard test set alone. ``n_test`` then truncates.
        augment: random crop and flip while training (2-D images only; the paper trains without).
        input_shape, num_classes: shape and classes of the ``fake`` data.

    Raises:
        ValueError: unknown name, bad sizes, augmentation of 1-D data, a malformed user source.
        FileNotFoundError: CIFAR files absent and ``download`` not given; a user source's file or folder absent.
    """
    user = isinstance(name, str) and is_user_source(name)
    if not user and name not in _NAMES:
        raise ValueError(f"unknown data set {name!r}; expected one of {', '.join(_NAMES)}, "
                         "or npz:PATH, folder:PATH, package.module:function")
    for label, value in (("n_train", n_train), ("n_test", n_test)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{label} must be a positive integer or None, got {value!r}")
    if test_size is not None and name != "mnist1d":
        raise ValueError(f"test_size applies to mnist1d only; use n_test to shorten the test split of {name}")
    if test_size is None:
        test_size = MNIST1D_TEST_SIZE
    if not isinstance(test_size, int) or isinstance(test_size, bool) or test_size < _MNIST1D_STANDARD_TEST:
        raise ValueError(f"test_size must be an integer of at least {_MNIST1D_STANDARD_TEST} (the standard test set), "
                         f"got {test_size!r}; use n_test to take fewer")
    if user:
        (x, y, x_test, y_test), num_classes = load_source(name)
    elif name == "fake":
        x, y, x_test, y_test = _fake(tuple(input_shape), num_classes, n_train or 512, n_test or 256, seed)
    else:
        if name == "mnist1d":
            arrays = _mnist1d(Path(root) if root is not None else default_cache(), test_size)
            x, x_test = torch.from_numpy(arrays[0].astype(np.float32)), torch.from_numpy(arrays[2].astype(np.float32))
        elif name == "digits":
            arrays = _digits()
            x, x_test = _standardise(arrays[0], arrays[2], per_channel=False)
        else:
            if root is None:
                raise FileNotFoundError(
                    f"{name} needs root= (--data-root), the folder holding or receiving the CIFAR files; "
                    f"add download=True (--download) to fetch them"
                )
            arrays = _cifar(name, Path(root), download)
            x, x_test = _standardise(arrays[0], arrays[2], per_channel=True)
        y, y_test = torch.from_numpy(arrays[1]).long(), torch.from_numpy(arrays[3]).long()
        num_classes = _CIFAR[name][4] if name in _CIFAR else 10
    x, y, x_test, y_test = x[:n_train], y[:n_train], x_test[:n_test], y_test[:n_test]
    if augment and x.dim() != 4:
        raise ValueError(f"augment=True crops and flips 2-D images; {name} has inputs of shape {tuple(x.shape[1:])}")
    return Dataset(
        x_train=x.contiguous(), y_train=y.contiguous(), x_test=x_test.contiguous(), y_test=y_test.contiguous(),
        input_shape=tuple(x.shape[1:]), num_classes=int(num_classes), name=name, augment=augment,
    )
