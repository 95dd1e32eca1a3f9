"""Flags and helpers shared by every ``python -m runners.X`` command."""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch
from torch import nn

import embeddings

DATA_SETS = ("mnist1d", "digits", "cifar10", "cifar100", "fake")
DATA_HELP = (
    "data set (default: %(default)s): mnist1d (generated offline), digits, cifar10, cifar100, fake, or your own: "
    "npz:PATH (arrays x_train, y_train, x_test, y_test), "
    "folder:PATH (ImageFolder layout PATH/train/<class>/<image>, PATH/test/<class>/<image>; images read as RGB and "
    "turned into tensors by ToTensor only, no resizing or normalisation, so all must share one size), "
    "package.module:function (returns x_train, y_train, x_test, y_test, or a train and a test dataset); "
    "your inputs are used as given, the classes (largest label + 1) and input shape come from the data"
)


def data_arg(text: str) -> str:
    """The ``--data`` argparse type: a built-in name, ``npz:PATH``, ``folder:PATH`` or ``package.module:function``.

    Only the form is checked here; the source is read (and its errors reported) when the data is loaded.

    Example:
        >>> data_arg("fake"), data_arg("npz:my.npz"), data_arg("mypkg.data:load")
        ('fake', 'npz:my.npz', 'mypkg.data:load')
    """
    module, colon, attribute = text.partition(":")
    if text in DATA_SETS or (colon and module.strip() and attribute.strip()):
        return text
    raise argparse.ArgumentTypeError(f"expected {', '.join(DATA_SETS)}, npz:PATH, folder:PATH or package.module:function, got {text!r}")


def loss_arg(text: str) -> str:
    """The ``--loss`` argparse type: ``ce``, ``mse`` or ``package.module:function`` (the form only; imported when used).

    Example:
        >>> loss_arg("mse"), loss_arg("mylosses:focal")
        ('mse', 'mylosses:focal')
    """
    module, colon, attribute = text.partition(":")
    if text in ("ce", "mse") or (colon and module.strip() and attribute.strip()):
        return text
    raise argparse.ArgumentTypeError(f"expected ce, mse or package.module:function, got {text!r}")


def add_loss_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--loss``; turn it into a function with ``runners._engine.resolve_loss(args.loss)``."""
    parser.add_argument("--loss", type=loss_arg, default="ce", metavar="LOSS",
                        help="objective (default: %(default)s): ce (cross entropy), mse (mean squared error against one-hot targets, "
                             "averaged over batch and classes) or package.module:function ((outputs, int64 targets) -> "
                             "batch-mean scalar tensor); accuracy is argmax-based whatever the loss")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--data --data-root --download --device --seed --quiet`` to ``parser``."""
    parser.add_argument("--data", default="mnist1d", type=data_arg, metavar="DATA", help=DATA_HELP)
    parser.add_argument("--data-root", default=None, help="folder holding (or caching) the data set files")
    parser.add_argument("--download", action="store_true", help="allow torchvision to download CIFAR into --data-root")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1', ...")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress (shown as bars on a terminal, else as a line every NEEDLE_PROGRESS_INTERVAL seconds, 30 unless set)%(default).0s")


def json_dict(text: str) -> dict[str, Any]:
    """Parse a JSON object such as ``'{"channels": 32}'`` for argparse.

    Example:
        >>> json_dict('{"num_classes": 10}')
        {'num_classes': 10}
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"channels\": 32}}', got {text!r} ({err.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"channels\": 32}}', got {text!r}")
    return value


def shape_arg(text: str) -> tuple[int, ...]:
    """Parse ``--input-shape``: one input without the batch dimension, ``"3,16,16"`` or ``"1,40"``.

    Example:
        >>> shape_arg("3,16,16"), shape_arg("1x40")
        ((3, 16, 16), (1, 40))
    """
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if not shape or any(size <= 0 for size in shape):
        raise argparse.ArgumentTypeError(f"expected positive sizes without the batch dimension like 3,16,16 or 1,40, got {text!r}")
    return shape


def add_model_arguments(parser: argparse.ArgumentParser, *, default: str | None = None, default_help: str = "") -> None:
    """Add ``--model`` (alias ``--arch``), ``--model-kwargs`` (alias ``--arch-kwargs``) and ``--input-shape``.

    They land in ``args.arch``, ``args.arch_kwargs`` and ``args.input_shape``; build the model with
    ``embeddings.build_model(args.arch, **model_kwargs(args))``.

    Args:
        parser: the command's parser.
        default: the default ``--model``.
        default_help: what the default is, for ``--help`` (e.g. "vanilla1d for sequences, vanilla2d for images").
    """
    # "%(default).0s" prints nothing but tells ArgumentDefaultsHelpFormatter not to add a second "(default: None)".
    said = f" (default: {default_help or default})%(default).0s" if default_help or default else ""
    parser.add_argument("--model", "--arch", dest="arch", default=default, metavar="MODEL",
                        help="a registry name (vanilla1d, vanilla2d, alexnet, mlp, smallnet1d, smallnet2d) or an import path "
                             f"package.module:factory, e.g. torchvision.models:resnet18{said}")
    parser.add_argument("--model-kwargs", "--arch-kwargs", dest="arch_kwargs", type=json_dict, default={}, metavar="JSON",
                        help="JSON keyword arguments of the model's factory, e.g. '{\"num_classes\": 10}'%(default).0s")
    parser.add_argument("--input-shape", type=shape_arg, default=None, metavar="SHAPE",
                        help="one input without the batch dimension, e.g. 3,16,16 (default: the data set's, else the checkpoint's)%(default).0s")


def model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``--model-kwargs`` with ``--input-shape`` added (a shape in both must agree: one line otherwise)."""
    kwargs = dict(args.arch_kwargs)
    if args.input_shape is not None:
        given = kwargs.get("input_shape")
        if given is not None and tuple(given) != tuple(args.input_shape):
            raise fail(f"--input-shape {','.join(map(str, args.input_shape))} and --model-kwargs input_shape {given} disagree; give one")
        kwargs["input_shape"] = tuple(args.input_shape)
    return kwargs


def model_from_args(args: argparse.Namespace) -> nn.Module | None:
    """A fresh model from ``--model``/``--model-kwargs``/``--input-shape`` to load a plain state dict into; ``None`` without ``--model``.

    Built inside ``fork_rng``: its random initialisation (overwritten by the weights loaded) leaves
    the global generator as it was.
    """
    if args.arch is None:
        return None
    with torch.random.fork_rng(devices=[]):
        try:
            return embeddings.build_model(args.arch, **model_kwargs(args))
        except (ValueError, RuntimeError) as err:
            raise model_failure(args.arch, err) from None


def seeds_arg(text: str) -> int | tuple[int, ...]:
    """The ``--seeds`` argparse type: ``"3"`` is a count (expanded from ``--seed`` by :func:`expand_seeds`), ``"0,4,7"`` a list.

    Example:
        >>> seeds_arg("3"), seeds_arg("0,4,7")
        (3, (0, 4, 7))
    """
    parts = [part.strip() for part in text.split(",")]
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count or a comma-separated list of seeds; use e.g. 3 or 0,4,7") from None
    if len(numbers) == 1:
        if numbers[0] < 1:
            raise argparse.ArgumentTypeError(f"a seed count must be >= 1, got {text!r}; use e.g. --seeds 3")
        return numbers[0]
    if any(number < 0 for number in numbers):
        raise argparse.ArgumentTypeError(f"seeds must be >= 0, got {text!r}; use e.g. --seeds 0,4,7")
    if len(set(numbers)) != len(numbers):
        raise argparse.ArgumentTypeError(f"seeds must not repeat, got {text!r}; list each seed once")
    return tuple(numbers)


def expand_seeds(seeds: int | tuple[int, ...] | None, base_seed: int) -> tuple[int, ...]:
    """The seeds a command runs: ``None`` -> ``(base_seed,)``; a count ``k`` -> ``base_seed .. base_seed+k-1``; a list as given.

    Example:
        >>> expand_seeds(None, 5), expand_seeds(3, 5), expand_seeds((0, 4), 5)
        ((5,), (5, 6, 7), (0, 4))
    """
    if seeds is None:
        return (base_seed,)
    if isinstance(seeds, int):
        return tuple(range(base_seed, base_seed + seeds))
    return tuple(seeds)


def add_seeds_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--seeds`` (a count from ``--seed``, or a list); read it with ``expand_seeds(args.seeds, args.seed)``."""
    parser.add_argument("--seeds", type=seeds_arg, default=None,
                        help="several seeds: a count (3 = --seed .. --seed+2) or a list (0,4,7) (default: just --seed)%(default).0s")


def resolve_device(name: str) -> torch.device:
    """Turn ``--device`` into a ``torch.device``, failing clearly when CUDA was asked for but is absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SystemExit(f"error: --device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {name} was asked for but CUDA is not available here; use --device cpu")
    return device


def progress_disabled(quiet: bool) -> bool:
    """Progress off with ``--quiet`` only: on a terminal it is a bar, in a log a line every ~30 s (``landscape.Progress``;
    ``NEEDLE_PROGRESS_INTERVAL`` sets the seconds)."""
    return quiet


def fail(message: str) -> SystemExit:
    """The one-line error of a CLI: ``raise fail("...")`` prints ``error: ...`` and exits with status 1."""
    return SystemExit(f"error: {message}")


def model_failure(arch: str, err: Exception) -> SystemExit:
    """The one line of every CLI whose ``--model`` cannot be built: ``raise model_failure(arch, err) from None``.

    Example:
        >>> model_failure("resnet", ValueError("unknown architecture 'resnet'"))
        SystemExit("error: --model resnet: unknown architecture 'resnet'")
    """
    return fail(f"--model {arch}: {str(err).splitlines()[0]}")
