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
