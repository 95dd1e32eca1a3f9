"""Input validation for the embeddings package: messages say what was expected, got, and what to do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

TARGETS = ("efcn", "elcn")
KEEPS = ("local", "offlocal")


def resolve_input_shape(model: nn.Module, input_shape: Sequence[int] | None) -> tuple[int, ...]:
    """The input shape to embed for: the one given, else the one recorded by ``build_model``."""
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None)
        if input_shape is None:
            raise ValueError(
                "input_shape is required for a model not built by embeddings.build_model: pass the shape of one "
                "input without the batch dimension, e.g. (1, 40) for MNIST-1D or (3, 32, 32) for CIFAR"
            )
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"input_shape must be a tuple of positive ints such as (3, 32, 32), got {input_shape!r}") from None
    if len(shape) not in (2, 3) or any(s <= 0 for s in shape):
        raise ValueError(
            f"input_shape must be (C, L) for 1-D or (C, H, W) for 2-D inputs, without the batch dimension; got {shape}"
        )
    return shape


def check_choice(value: Any, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value
