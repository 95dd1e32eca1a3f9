"""A small 1-D CNN that is not in the toolkit's registry: the "own network" of the walkthrough.

The CLIs build it by import path, ``--model examples.own_model.mynet:factory --model-kwargs '{"width": 8}'``,
and every checkpoint of it records that path and those arguments, so a fresh process rebuilds it with no flag.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def factory(*, width: int = 8, num_classes: int = 4, input_shape: Sequence[int] = (1, 32)) -> nn.Module:
    """Conv(5) -> ReLU -> MaxPool(2) -> Conv(3, stride 2) -> ReLU -> Linear: two convs the embedding relaxes.

    Args:
        width: channels of both convolutions.
        num_classes: outputs of the classifier.
        input_shape: one input ``(channels, length)``; the toolkit passes the data's shape here because
            the factory has a parameter of that name (the classifier's width depends on the length).

    Returns:
        The network, an ``nn.Sequential``.

    Example:
        >>> import torch
        >>> factory(width=4, num_classes=3, input_shape=(1, 20))(torch.zeros(2, 1, 20)).shape
        torch.Size([2, 3])
    """
    channels, length = input_shape
    pooled = length // 2
    strided = (pooled + 2 * 1 - 3) // 2 + 1  # padding 1, kernel 3, stride 2
    return nn.Sequential(
        nn.Conv1d(channels, width, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Conv1d(width, width, kernel_size=3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(width * strided, num_classes),
    )
