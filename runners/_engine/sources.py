"""The user's own data sets: an import path, an ``.npz`` file or an ``ImageFolder`` tree.

A source is named by a string (``--data``):

* ``package.module:function``: the function, called without arguments, returns
  ``(x_train, y_train, x_test, y_test)`` (tensors or arrays) or ``(train_dataset, test_dataset)``,
  map-style datasets (``len`` and ``dataset[i] -> (x, label)``, ``x`` a tensor or array) that are
  read once into memory.
* ``npz:PATH``: a NumPy ``.npz`` file with the arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``.
* ``folder:PATH``: torchvision's ``ImageFolder`` layout, ``PATH/train/<class>/<image>`` and
  ``PATH/test/<class>/<image>``, both with the same class folders; each image is read as RGB by
  torchvision's default loader and turned into a ``(3, H, W)`` tensor in [0, 1] by ``ToTensor``,
  nothing else (no resizing, no normalisation), so all images must share one size.

Inputs become float32 tensors as given (no standardisation: a source gives them ready to use),
labels int64 class indices. The number of classes is the largest label plus one (``folder:``: its
class folders); the input shape is one example's. Every malformed source raises one line that names
it and says what to fix (``FileNotFoundError`` for missing files, ``ValueError`` otherwise).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from runners._engine.imports import import_function, is_import_path

__all__ = ["SOURCE_PREFIXES", "is_user_source", "load_source", "checked_arrays"]

SOURCE_PREFIXES = ("npz:", "folder:")
_SPLITS = ("x_train", "y_train", "x_test", "y_test")
_MAX_CLASSES = 100_000  # above any real label set (ImageNet-21k: 21841)
Arrays = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def is_user_source(name: str) -> bool:
    """Whether ``name`` is a user's source (``npz:``, ``folder:`` or an import path), not a built-in set.

    Example:
        >>> is_user_source("npz:data.npz"), is_user_source("mypkg.data:load"), is_user_source("mnist1d")
        (True, True, False)
    """
    return name.startswith(SOURCE_PREFIXES) or is_import_path(name)


def load_source(name: str) -> tuple[Arrays, int]:
    """The four tensors of the source ``name`` and its number of classes (module docstring).

    Raises:
        FileNotFoundError: the file or folder of ``npz:`` / ``folder:`` is missing (one line).
        ValueError: anything else malformed (one line).
    """
    label = f"--data {name}"  # every message opens with the source as the user wrote it
    for prefix, loader in (("npz:", _npz), ("folder:", _folder)):
        if name.startswith(prefix):
            path = name[len(prefix):]
            if not path:
                raise ValueError(f"--data {prefix} needs a path after the colon, e.g. {prefix}data/my_set")
            return loader(Path(path), label)
    return _from_function(name, label)


def _tensor(value: Any, label: str, source: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    try:
        array = np.asarray(value)
    except Exception:  # whatever the object, the fix is the same
        array = np.asarray(None)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{source}: {label} is not numeric ({type(value).__name__} of dtype {array.dtype}); "
                         "give numbers as a tensor or a NumPy array")
    return torch.from_numpy(np.ascontiguousarray(array))


def _labels(y: torch.Tensor, label: str, source: str) -> torch.Tensor:
    if y.dim() != 1:
        raise ValueError(f"{source}: {label} has shape {tuple(y.shape)}; labels are class indices of shape (N,) "
                         "(one-hot labels: take their argmax)")
    fractional = y.is_floating_point() and not torch.equal(y, y.round())
    if y.dtype == torch.bool or y.is_complex() or fractional:
        raise ValueError(f"{source}: {label} must hold integer class labels 0, 1, 2, ..., got dtype {y.dtype}"
                         f"{' with values that are not whole numbers' if fractional else ''}")
    y = y.long()
    if len(y) and int(y.min()) < 0:
        raise ValueError(f"{source}: {label} holds the negative label {int(y.min())}; labels are class indices 0, 1, 2, ...")
    if len(y) and int(y.max()) >= _MAX_CLASSES:  # ids, not indices: a classifier that wide would not fit in memory
        raise ValueError(f"{source}: {label} holds the label {int(y.max())}; labels are class indices 0 .. classes - 1 "
                         "(map ids to indices, e.g. np.unique(y, return_inverse=True))")
    return y


def checked_arrays(values: dict[str, Any], source: str) -> tuple[Arrays, int]:
    """``x_train, y_train, x_test, y_test`` as float32 / int64 tensors and the number of classes, checked.

    Example:
        >>> (x, y, xt, yt), classes = checked_arrays(
        ...     {"x_train": np.ones((4, 1, 3)), "y_train": [0, 2, 1, 0], "x_test": np.ones((2, 1, 3)), "y_test": [1, 1]}, "demo")
        >>> tuple(x.shape), x.dtype, classes
        ((4, 1, 3), torch.float32, 3)
    """
    x_train, x_test = (_tensor(values[key], key, source) for key in ("x_train", "x_test"))
    y_train, y_test = (_labels(_tensor(values[key], key, source), key, source) for key in ("y_train", "y_test"))
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.dim() < 2:
            raise ValueError(f"{source}: x_{split} has shape {tuple(x.shape)}; inputs are (N, *input_shape), "
                             "e.g. (N, 1, 40) for sequences or (N, 3, 32, 32) for images")
        if len(x) != len(y):
            raise ValueError(f"{source}: x_{split} has {len(x)} examples but y_{split} has {len(y)}; "
                             "give one label per input")
        if not len(y):
            raise ValueError(f"{source}: the {split} split is empty; give at least one example")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"{source}: training inputs have shape {tuple(x_train.shape[1:])} but test inputs "
                         f"{tuple(x_test.shape[1:])}; both splits need one input shape")
    x_train, x_test = x_train.float(), x_test.float()
    for split, x in (("train", x_train), ("test", x_test)):
        if not torch.isfinite(x).all():
            raise ValueError(f"{source}: x_{split} holds NaN or infinite values; clean or drop those examples")
    return (x_train, y_train, x_test, y_test), int(max(y_train.max(), y_test.max())) + 1


def _npz(path: Path, source: str) -> tuple[Arrays, int]:
    if not path.is_file():
        raise FileNotFoundError(f"{source}: no file {path}; give the path of an .npz file with arrays {', '.join(_SPLITS)}")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            held = list(arrays.files)
            values = {key: arrays[key] for key in _SPLITS if key in held}
    except Exception as err:  # not an archive, damaged, a lone .npy, object arrays (pickles are never loaded)
        detail = str(err).strip().splitlines()
        raise ValueError(f"{source}: {path} is not a readable .npz file of numeric arrays ({type(err).__name__}"
                         f"{': ' + detail[0] if detail else ''}); write it with np.savez") from None
    missing = [key for key in _SPLITS if key not in values]
    if missing:
        raise ValueError(f"{source}: {path} lacks the array(s) {', '.join(missing)} (it holds {', '.join(held) or 'none'}); "
                         "save x_train, y_train, x_test, y_test with np.savez")
    return checked_arrays(values, source)


def _visible(path: str) -> bool:
    return not Path(path).name.startswith(".")  # .DS_Store and the like are not images


def _folder(root: Path, source: str) -> tuple[Arrays, int]:
    layout = f"the layout is {root}/train/<class>/<image> and {root}/test/<class>/<image>"
    if not root.is_dir():
        raise FileNotFoundError(f"{source}: no folder {root}; {layout}")
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import ToTensor

    splits = {}
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise FileNotFoundError(f"{source}: {root / split} is missing; {layout}")
        try:
            splits[split] = ImageFolder(str(root / split), transform=ToTensor(), is_valid_file=_visible)
        except FileNotFoundError as err:  # no class folder, or a class folder without files
            raise FileNotFoundError(f"{source}: {str(err).splitlines()[0].strip()} (in {root / split}); {layout}") from None
    train, test = splits["train"], splits["test"]
    if train.classes != test.classes:
        raise ValueError(f"{source}: train has the class folders {train.classes} but test {test.classes}; "
                         "give both splits the same class folders")
    values: dict[str, torch.Tensor] = {}
    first: tuple[str, tuple[int, ...]] | None = None
    for split, dataset in splits.items():
        images = []
        for index, (file, _) in enumerate(dataset.samples):
            try:
                image, _ = dataset[index]
            except Exception as err:  # PIL's UnidentifiedImageError, truncated files, ...
                raise ValueError(f"{source}: {file} is not an image that PIL can read ({type(err).__name__}); "
                                 f"keep only images under {root}/<split>/<class>/") from None
            if first is None:
                first = (file, tuple(image.shape))
            elif tuple(image.shape) != first[1]:
                raise ValueError(f"{source}: {file} is {'x'.join(map(str, image.shape))} but {first[0]} is "
                                 f"{'x'.join(map(str, first[1]))}; all images must share one size (ToTensor only, no resizing)")
            images.append(image)
        values[f"x_{split}"] = torch.stack(images)
        values[f"y_{split}"] = torch.tensor(dataset.targets, dtype=torch.long)
    arrays, _ = checked_arrays(values, source)
    return arrays, len(train.classes)


def _materialise(dataset: Any, split: str, source: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A map-style dataset read into two tensors (inputs stacked, labels)."""
    try:
        size = len(dataset)
        items = [dataset[i] for i in range(size)]
    except Exception as err:  # no len(), no indexing, or the dataset's own failure
        raise ValueError(f"{source}: reading the {split} dataset failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                         "return map-style datasets (len() and dataset[i] -> (input, label)) or tensors") from None
    xs, ys = [], []
    for index, item in enumerate(items):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ValueError(f"{source}: {split} dataset[{index}] is a {type(item).__name__}, not an (input, label) pair")
        x = _tensor(item[0], f"the input of {split} dataset[{index}]", source)
        if xs and x.shape != xs[0].shape:
            raise ValueError(f"{source}: {split} dataset[{index}] has an input of shape {tuple(x.shape)} but dataset[0] "
                             f"{tuple(xs[0].shape)}; every input needs one shape")
        xs.append(x)
        label = item[1]
        ys.append(label.item() if isinstance(label, (torch.Tensor, np.ndarray, np.generic)) and np.size(label) == 1 else label)
    if not xs:
        raise ValueError(f"{source}: the {split} dataset is empty; give at least one example")
    return torch.stack(xs), _tensor(ys, f"y_{split}", source)


def _from_function(name: str, label: str) -> tuple[Arrays, int]:
    if not is_import_path(name):
        raise ValueError(f"{name!r} is not a data source: use a built-in name, npz:PATH, folder:PATH or package.module:function")
    function = import_function(name, what=label)
    try:
        returned = function()
    except Exception as err:  # the user's function failed: its message, in one line
        text = str(err).strip().splitlines()
        raise ValueError(f"{label}: calling it raised {type(err).__name__}: {text[0] if text else ''}") from None
    if isinstance(returned, (tuple, list)) and len(returned) == 4:
        return checked_arrays(dict(zip(_SPLITS, returned)), label)
    if isinstance(returned, (tuple, list)) and len(returned) == 2:
        (x_train, y_train), (x_test, y_test) = (_materialise(d, s, label) for d, s in zip(returned, ("train", "test")))
        return checked_arrays({"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}, label)
    raise ValueError(f"{label} returned a {type(returned).__name__}"
                     f"{f' of length {len(returned)}' if isinstance(returned, (tuple, list)) else ''}; return "
                     "(x_train, y_train, x_test, y_test) or (train_dataset, test_dataset)")
