"""Flags and helpers shared by every ``python -m runners.X`` command."""

from __future__ import annotations

import argparse
import sys

import torch

DATA_SETS = ("mnist1d", "digits", "cifar10", "cifar100", "fake")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--data --data-root --download --device --seed --quiet`` to ``parser``."""
    parser.add_argument("--data", default="mnist1d", choices=DATA_SETS, help="data set (default: mnist1d, generated offline)")
    parser.add_argument("--data-root", default=None, help="folder holding (or caching) the data set files")
    parser.add_argument("--download", action="store_true", help="allow torchvision to download CIFAR into --data-root")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1', ...")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


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
                        help="several seeds: a count (3 = --seed .. --seed+2) or a list (0,4,7); default: just --seed")


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
    """Progress bars only for a person watching: off with ``--quiet`` and when stderr is not a TTY."""
    return quiet or not sys.stderr.isatty()


def fail(message: str) -> SystemExit:
    """The one-line error of a CLI: ``raise fail("...")`` prints ``error: ...`` and exits with status 1."""
    return SystemExit(f"error: {message}")
