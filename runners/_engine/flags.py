"""Flags of the engine's tools: parsers of list, JSON, size and shard values, and the training flags.

``runners.train`` and ``runners.relax`` share :func:`add_training_arguments` (architecture, optimizer,
data subset, output and resume flags); :func:`runners._engine.experiment.context_from_args` turns
them into a :class:`~runners._engine.specs.RunContext`. The data, device and seed flags every
command shares come from ``runners.cli``.
"""

from __future__ import annotations

import argparse

from runners.cli import add_loss_argument, add_model_arguments, json_dict

__all__ = ["int_list", "json_dict", "byte_size", "shard_arg", "add_training_arguments"]


def int_list(text: str) -> tuple[int, ...]:
    """Parse ``"0,1,2"`` (an empty string is an empty list) for argparse.

    Example:
        >>> int_list("4,0,4"), int_list("")
        ((0, 4), ())
    """
    try:
        return tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 0,2,8, got {text!r}") from None


def byte_size(text: str) -> int:
    """Parse ``"2GiB"``, ``"512MiB"``, ``"1.5e9"`` or ``"800000000"`` (bytes) for argparse.

    Example:
        >>> byte_size("2GiB"), byte_size("1.5e3")
        (2147483648, 1500)
    """
    units = {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "kb": 10**3, "mb": 10**6, "gb": 10**9, "b": 1}
    lowered = text.strip().lower()
    unit = next((u for u in units if lowered.endswith(u)), "b" if lowered.endswith("b") else "")
    try:
        value = float(lowered[: len(lowered) - len(unit)] if unit else lowered) * units.get(unit, 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 2GiB, 512MiB or 800000000 (bytes), got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive size like 2GiB, got {text!r}")
    return int(value)


def shard_arg(text: str) -> tuple[int, int]:
    """Parse ``"i/n"`` (0 <= i < n) for argparse."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected i/n with integers, e.g. 0/4, got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"expected i/n with 0 <= i < n, e.g. 0/4, got {text!r}")
    return index, count


def add_training_arguments(parser: argparse.ArgumentParser, *, out: str, epochs: int) -> None:
    """Architecture, optimizer and output flags (the data/device/seed flags come from runners.cli)."""
    parser.add_argument("--out", default=out, help=f"output folder: results.h5, checkpoints/, state/ (default: {out})")
    add_model_arguments(parser, default_help="vanilla1d for sequences, vanilla2d for images")
    parser.add_argument("--channels", type=int, default=32,
                        help="conv width of the VanillaCNN (default: 32, whose eFCN has 1.1M parameters on MNIST-1D; the paper uses 64)")
    parser.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default: {epochs})")
    parser.add_argument("--batch-size", type=int, default=100, help="examples per step (default: 100)")
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help="optimizer (default: adam; SGD uses --momentum)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: 1e-3)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay (default: 0)")
    parser.add_argument("--schedule", choices=("constant", "cosine", "step"), default="constant", help="learning-rate schedule per epoch (default: constant)")
    parser.add_argument("--step-every", type=int, default=30, help="step schedule: epochs between decays (default: 30)")
    parser.add_argument("--gamma", type=float, default=0.1, help="step schedule: decay factor (default: 0.1)")
    parser.add_argument("--augment", action="store_true", help="random crop (padding 4) and flip while training (2-D images only)")
    parser.add_argument("--n-train", type=int, default=None, help="keep only the first N training examples (quick runs)")
    parser.add_argument("--n-test", type=int, default=None, help="keep only the first N test examples (quick runs)")
    parser.add_argument("--amp", action="store_true", help="bfloat16 mixed precision for the training steps (evaluations stay float32)")
    add_loss_argument(parser)
    parser.add_argument("--max-bytes", type=byte_size, default=None,
                        help="refuse embeddings whose parameters exceed this size, e.g. 2GiB (default: half the free memory of --device)")
    parser.add_argument("--resume", action="store_true", help="continue a killed run from its last per-epoch state in --out")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace this command's result in --out and its runs' checkpoints (other results are kept)")
