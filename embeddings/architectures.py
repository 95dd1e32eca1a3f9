"""Architecture registry: models are rebuilt by name and keyword arguments.

Checkpoints store ``arch`` and ``arch_kwargs`` only, so every model here must be reproducible from
JSON-like keyword arguments. The paper's nets:

* ``vanilla1d`` / ``vanilla2d`` -- the VanillaCNN: three convolutions of 64 channels (kernels 4/5/3
  with max-pooling in 2-D, as in d'Ascoli et al.'s code; kernels 5/3/3 with strides 1/2/2 in 1-D for
  MNIST-1D) and a linear classifier.
* ``alexnet`` -- AlexNet for 32x32 inputs: five convolutions 64/192/384/256/256 with max-pooling,
  then 256 -> 512 -> 512 -> classes with dropout.
* ``mlp`` -- a plain multi-layer perceptron, for sanity baselines.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["ARCHITECTURES", "build_model", "register_architecture", "VanillaCNN", "AlexNet"]

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}


def register_architecture(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a model factory under ``name`` so that checkpoints can rebuild it.

    Factories take keyword arguments only, and one of them must be ``input_shape`` (with a default).
    """

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is already registered")
        ARCHITECTURES[name] = factory
        return factory

    return decorator


def build_model(arch: str, **arch_kwargs: Any) -> nn.Module:
    """Build a registered architecture.

    Example:
        >>> model = build_model("vanilla1d", channels=8)
        >>> model(torch.zeros(2, 1, 40)).shape
        torch.Size([2, 10])
    """
    if arch not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {arch!r}; expected one of: {known}")
    factory = ARCHITECTURES[arch]
    try:
        model = factory(**arch_kwargs)
    except TypeError as err:
        raise ValueError(f"architecture {arch!r} does not accept arguments {arch_kwargs}: {err}") from None
    # Recorded on the module so that checkpoints (results.save_checkpoint) can rebuild it by name.
    model.arch = arch
    model.arch_kwargs = dict(arch_kwargs)
    model.input_shape = tuple(arch_kwargs.get("input_shape", inspect.signature(factory).parameters["input_shape"].default))
    model.space = "cnn"
    return model


def _as_tuple(values: int | Sequence[int], count: int, what: str) -> tuple[int, ...]:
    if isinstance(values, int):
        return (values,) * count
    values = tuple(int(v) for v in values)
    if len(values) != count:
        raise ValueError(f"{what} needs {count} entries (one per conv layer), got {values}")
    return values


def _flat_size(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(module(torch.zeros(1, *input_shape)).numel())


class VanillaCNN(nn.Module):
    """Convolutions with ReLU (and optional max-pooling) followed by one linear classifier.

    Args:
        dim: 1 for sequences ``(C, L)``, 2 for images ``(C, H, W)``.
        input_shape: input shape without the batch dimension.
        num_classes: number of output logits.
        channels: width of every conv layer (the paper uses 64).
        kernel_sizes, strides, paddings: one entry per conv layer.
        pool: max-pooling (kernel 3, stride 2) after each conv, as in the paper's 2-D VanillaCNN.
        bias: whether convolutions carry biases.
    """

    def __init__(
        self,
        *,
        dim: int,
        input_shape: Sequence[int],
        num_classes: int = 10,
        channels: int = 64,
        kernel_sizes: Sequence[int] = (5, 3, 3),
        strides: int | Sequence[int] = (1, 2, 2),
        paddings: int | Sequence[int] | None = None,
        pool: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if dim not in (1, 2):
            raise ValueError(f"dim must be 1 or 2, got {dim}")
        input_shape = tuple(int(s) for s in input_shape)
        if len(input_shape) != dim + 1:
            raise ValueError(f"input_shape for a {dim}-D CNN is (C, {'L' if dim == 1 else 'H, W'}), got {input_shape}")
        depth = len(kernel_sizes)
        kernel_sizes = _as_tuple(kernel_sizes, depth, "kernel_sizes")
        strides = _as_tuple(strides, depth, "strides")
        # k // 2 keeps the length at stride 1 for odd kernels, the convention of the paper's code.
        paddings = tuple(k // 2 for k in kernel_sizes) if paddings is None else _as_tuple(paddings, depth, "paddings")
        conv = nn.Conv1d if dim == 1 else nn.Conv2d
        pooling = nn.MaxPool1d if dim == 1 else nn.MaxPool2d
        layers: list[nn.Module] = []
        in_channels = input_shape[0]
        for kernel, stride, padding in zip(kernel_sizes, strides, paddings):
            layers += [conv(in_channels, channels, kernel, stride=stride, padding=padding, bias=bias), nn.ReLU()]
            if pool:
                layers.append(pooling(kernel_size=3, stride=2))
            in_channels = channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(_flat_size(self.features, input_shape), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class AlexNet(nn.Module):
    """AlexNet for 32x32 inputs, as used by d'Ascoli et al. (2019) on CIFAR-100."""

    def __init__(self, *, num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32), dropout: float = 0.5) -> None:
        super().__init__()
        input_shape = tuple(int(s) for s in input_shape)
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], 64, kernel_size=4, stride=2, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(_flat_size(self.features, input_shape), 512),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


@register_architecture("vanilla1d")
def vanilla1d(
    *,
    input_shape: Sequence[int] = (1, 40),
    num_classes: int = 10,
    channels: int = 64,
    kernel_sizes: Sequence[int] = (5, 3, 3),
    strides: int | Sequence[int] = (1, 2, 2),
    paddings: int | Sequence[int] | None = None,
    pool: bool = False,
    bias: bool = True,
) -> VanillaCNN:
    """1-D VanillaCNN; defaults fit MNIST-1D (input (1, 40), 10 classes)."""
    return VanillaCNN(
        dim=1, input_shape=input_shape, num_classes=num_classes, channels=channels, kernel_sizes=kernel_sizes,
        strides=strides, paddings=paddings, pool=pool, bias=bias,
    )


@register_architecture("vanilla2d")
def vanilla2d(
    *,
    input_shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    channels: int = 64,
    kernel_sizes: Sequence[int] = (4, 5, 3),
    strides: int | Sequence[int] = (2, 1, 1),
    paddings: int | Sequence[int] | None = (2, 2, 1),
    pool: bool = True,
    bias: bool = True,
) -> VanillaCNN:
    """2-D VanillaCNN of the paper (kernels 4/5/3, max-pooling); defaults fit CIFAR."""
    return VanillaCNN(
        dim=2, input_shape=input_shape, num_classes=num_classes, channels=channels, kernel_sizes=kernel_sizes,
        strides=strides, paddings=paddings, pool=pool, bias=bias,
    )


@register_architecture("alexnet")
def alexnet(*, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10, dropout: float = 0.5) -> AlexNet:
    """The paper's AlexNet for 32x32 inputs."""
    return AlexNet(num_classes=num_classes, input_shape=input_shape, dropout=dropout)


@register_architecture("mlp")
def mlp(*, input_shape: Sequence[int] = (1, 40), num_classes: int = 10, hidden: Sequence[int] = (256, 256)) -> nn.Sequential:
    """A plain ReLU perceptron on the flattened input."""
    widths = [int(torch.Size(input_shape).numel()), *hidden]
    layers: list[nn.Module] = [nn.Flatten()]
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    layers.append(nn.Linear(widths[-1], num_classes))
    return nn.Sequential(*layers)
