"""The compact nets of ExpandNets (Guo et al., NeurIPS 2020), in the architecture registry.

SmallNet: three convolutions of 8, 16 and 32 channels (``k x k``, padding ``k // 2``), each followed
by BatchNorm, ReLU and 2x2 max-pooling, then two fully-connected layers (``hidden`` units, ReLU, the
classifier). The paper uses ``k = 3`` and ``k = 7`` on CIFAR (7x7 SmallNet 78.6% -> 80.3% with CK
expansion, r = 4). ``smallnet1d`` is the same net with 1-D layers, for MNIST-1D (input ``(1, 40)``).

Registered names: ``smallnet1d`` (MNIST-1D defaults) and ``smallnet2d`` (CIFAR defaults); both take
``kernel_size`` (3 and 7 are the paper's variants).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from embeddings.architectures import register_architecture

__all__ = ["SmallNet", "smallnet1d", "smallnet2d"]


class SmallNet(nn.Module):
    """ExpandNets' compact CNN.

    Args:
        dim: 1 for sequences ``(C, L)``, 2 for images ``(C, H, W)``.
        input_shape: input shape without the batch dimension; every spatial size must be divisible
            by 8 (three 2x2 poolings).
        num_classes: number of logits.
        kernel_size: odd kernel size of every convolution (3 or 7 in the paper).
        channels: widths of the three convolutions.
        hidden: width of the hidden fully-connected layer.

    Example:
        >>> net = SmallNet(dim=2, input_shape=(3, 32, 32), kernel_size=7)
        >>> net(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self, *, dim: int, input_shape: Sequence[int], num_classes: int = 10, kernel_size: int = 3,
        channels: Sequence[int] = (8, 16, 32), hidden: int = 64,
    ) -> None:
        super().__init__()
        input_shape = tuple(int(s) for s in input_shape)
        if dim not in (1, 2) or len(input_shape) != dim + 1:
            raise ValueError(f"SmallNet: expected dim 1 with input_shape (C, L) or dim 2 with (C, H, W); got dim={dim}, input_shape={input_shape}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"SmallNet: kernel_size must be odd (padding k // 2 keeps the size); got {kernel_size}")
        pools = 2 ** len(channels)
        if any(s % pools for s in input_shape[1:]):
            raise ValueError(f"SmallNet: spatial sizes must be divisible by {pools} ({len(channels)} 2x2 poolings); got {input_shape}")
        conv, norm, pool = (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d) if dim == 1 else (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d)
        layers: list[nn.Module] = []
        width = input_shape[0]
        for out in channels:
            layers += [conv(width, out, kernel_size, padding=kernel_size // 2), norm(out), nn.ReLU(), pool(2)]
            width = out
        self.features = nn.Sequential(*layers)
        flat = width * int(torch.Size(input_shape[1:]).numel()) // pools**dim
        self.classifier = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


@register_architecture("smallnet1d")
def smallnet1d(
    *, input_shape: Sequence[int] = (1, 40), num_classes: int = 10, kernel_size: int = 3,
    channels: Sequence[int] = (8, 16, 32), hidden: int = 64,
) -> SmallNet:
    """1-D SmallNet; defaults fit MNIST-1D (length 40 -> 5 after three poolings)."""
    return SmallNet(dim=1, input_shape=input_shape, num_classes=num_classes, kernel_size=kernel_size, channels=channels, hidden=hidden)


@register_architecture("smallnet2d")
def smallnet2d(
    *, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10, kernel_size: int = 3,
    channels: Sequence[int] = (8, 16, 32), hidden: int = 64,
) -> SmallNet:
    """2-D SmallNet of the ExpandNets paper; defaults fit CIFAR-10."""
    return SmallNet(dim=2, input_shape=input_shape, num_classes=num_classes, kernel_size=kernel_size, channels=channels, hidden=hidden)
