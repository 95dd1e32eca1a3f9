"""Linear chains that replace one Linear / Conv layer of a compact net, and their exact composition.

ExpandNets (Guo, Alvarez & Salzmann, NeurIPS 2020) over-parameterise a compact net *linearly*: a
layer is replaced by a chain of layers with no nonlinearity in between, trained as is, then
multiplied out into the original layer. For a chain ``x -> W_l(...(W_1 x + b_1)...) + b_l``

.. math::

    W = W_l \\cdots W_1, \\qquad b = W_l(\\cdots(W_2 b_1 + b_2)\\cdots) + b_l,

and for convolutions (cross-correlations, stride 1 inside the chain) the kernels compose by *full
convolution*, :math:`K[o, i, s] = \\sum_c \\sum_{u + v = s} K_2[o, c, v] K_1[c, i, u]`, while a bias
crosses a valid convolution as :math:`b \\mapsto (\\sum_v K_2[:, :, v]) b`. The composition is exact
at the borders because the chain pads only once, on its first sub-layer, and is valid afterwards;
a stride, if any, sits on the last sub-layer (subsampling commutes with nothing that follows).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ExpandedConv", "ExpandedLinear", "compose_conv", "compose_linear"]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d}


def compose_linear(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Multiply out a chain of affine maps ``x -> W_i x + b_i`` (first map first).

    Differentiable in every argument, so a regulariser on the product (the paper's "product L2")
    back-propagates into the chain. Biases are all present or all ``None``.

    Example:
        >>> w1, w2 = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0], [4.0]])
        >>> w, b = compose_linear([w1, w2], [torch.tensor([1.0]), torch.tensor([0.0, 1.0])])
        >>> w.tolist(), b.tolist()
        ([[3.0, 6.0], [4.0, 8.0]], [3.0, 5.0])
    """
    weight, bias = weights[0], biases[0]
    for w, b in zip(weights[1:], biases[1:]):
        weight = w @ weight
        bias = None if bias is None else w @ bias + b
    return weight, bias


def compose_conv(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Compose a chain of valid, stride-1 cross-correlations (first layer first) into one kernel.

    The kernel of ``K_2 ⋆ (K_1 ⋆ x)`` is the full convolution of ``K_2`` and ``K_1`` over the shared
    channel, which is exactly ``conv_transpose`` with ``K_1`` read as a batch of ``in_channels``
    images of ``c`` channels and ``K_2`` as a transposed-conv weight ``(c, out, ...)``. Kernel sizes
    add up minus one per link: 3x3 ∘ 3x3 ∘ 3x3 is 7x7.

    Example (1-D, one channel: ``[1, -1] * [1, 1] = [1, 0, -1]``):
        >>> k, b = compose_conv([torch.tensor([[[1.0, 1.0]]]), torch.tensor([[[1.0, -1.0]]])],
        ...                     [torch.tensor([2.0]), torch.tensor([0.5])])
        >>> k.tolist(), b.tolist()
        ([[[1.0, 0.0, -1.0]]], [0.5])
    """
    transpose = _CONV_TRANSPOSE[weights[0].dim() - 2]
    kernel, bias = weights[0], biases[0]
    for w, b in zip(weights[1:], biases[1:]):
        spatial = tuple(range(2, w.dim()))
        bias = None if bias is None else w.sum(dim=spatial) @ bias + b
        kernel = transpose(kernel.transpose(0, 1), w.transpose(0, 1)).transpose(0, 1)
    return kernel, bias


def _default_init_(layer: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default Linear/Conv initialisation, drawn from ``generator`` (no global RNG)."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    if layer.bias is not None:
        bound = 1.0 / math.sqrt(layer.weight[0].numel())
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


def _materialise(layer: nn.Module, generator: torch.Generator, device: torch.device) -> nn.Module:
    # Built on the meta device so that construction draws nothing from the global RNG; initialised
    # on the CPU so that one CPU generator serves any target device.
    layer = layer.to_empty(device="cpu")
    with torch.no_grad():
        _default_init_(layer, generator)
    return layer.to(device)


class _Chain(nn.Module):
    """Common part of the expanded chains: a Sequential ``layers`` and the compact layer's config.

    Subclasses set ``_compose`` (the composition rule) and ``_empty_compact`` (the compact layer).
    """

    layers: nn.Sequential

    def _split(self, params: Mapping[str, torch.Tensor] | None) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        if params is None:
            params = dict(self.named_parameters())
        count = len(self.layers)
        weights = [params[f"layers.{i}.weight"] for i in range(count)]
        biases = [params.get(f"layers.{i}.bias") for i in range(count)]
        return weights, biases

    def composed(self, params: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The compact layer's ``weight`` (and ``bias``) as a differentiable function of the chain.

        Args:
            params: the chain's parameters by local name (``layers.0.weight`` ...); default: its own.
        """
        weight, bias = self._compose(*self._split(params))
        return {"weight": weight} if bias is None else {"weight": weight, "bias": bias}

    def compact(self) -> nn.Module:
        """A new compact layer holding the multiplied-out weights (detached copies)."""
        weight = self.layers[0].weight
        layer = self._empty_compact().to_empty(device=weight.device).to(weight.dtype)
        with torch.no_grad():
            for name, value in self.composed().items():
                getattr(layer, name).copy_(value)
        return layer


class ExpandedLinear(_Chain):
    """``nn.Linear(in_features, out_features)`` expanded into Linear layers of the given ``widths``.

    Args:
        in_features, out_features, bias: the compact layer's configuration (kept for ``compact``).
        widths: inner widths, e.g. ``(r * in_features, r * out_features)`` for the paper's FC rule.
        generator: source of the default PyTorch initialisation of every sub-layer.
        device, dtype: where the chain lives.
    """

    def __init__(
        self, in_features: int, out_features: int, *, widths: Sequence[int], bias: bool,
        generator: torch.Generator, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features, self.has_bias = int(in_features), int(out_features), bool(bias)
        sizes = [self.in_features, *(int(w) for w in widths), self.out_features]
        self.layers = nn.Sequential(*(
            _materialise(nn.Linear(a, b, bias=self.has_bias, device="meta", dtype=dtype), generator, torch.device(device))
            for a, b in zip(sizes[:-1], sizes[1:])
        ))

    _compose = staticmethod(compose_linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def _empty_compact(self) -> nn.Module:
        return nn.Linear(self.in_features, self.out_features, bias=self.has_bias, device="meta")

    def extra_repr(self) -> str:
        return f"compact=Linear({self.in_features}, {self.out_features}, bias={self.has_bias})"


class ExpandedConv(_Chain):
    """A ``Conv{dim}d`` expanded into stride-1 convolutions of the given widths and kernel sizes.

    The first sub-layer carries all of the compact layer's padding (any ``padding_mode``), the last
    one its stride; in between everything is valid, so the composition is exact everywhere.

    Args:
        dim: 1 or 2.
        in_channels, out_channels, kernel_size, stride, padding, padding_mode, bias: the compact
            layer's configuration; ``kernel_size`` must equal the sum of the sub-kernels minus the
            number of links (checked by ``expand``).
        widths: inner channel counts (one fewer than ``kernel_sizes``).
        kernel_sizes: the sub-layers' kernel sizes (tuples), first layer first.
        generator, device, dtype: as for :class:`ExpandedLinear`.
    """

    def __init__(
        self, dim: int, in_channels: int, out_channels: int, *, kernel_size: tuple[int, ...], stride: tuple[int, ...],
        padding: tuple[int, ...], padding_mode: str, bias: bool, widths: Sequence[int],
        kernel_sizes: Sequence[tuple[int, ...]], generator: torch.Generator,
        device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.dim, self.in_channels, self.out_channels = int(dim), int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = tuple(kernel_size), tuple(stride), tuple(padding)
        self.padding_mode, self.has_bias = padding_mode, bool(bias)
        sizes = [self.in_channels, *(int(w) for w in widths), self.out_channels]
        last = len(kernel_sizes) - 1
        conv = _CONV[self.dim]
        self.layers = nn.Sequential(*(
            _materialise(
                conv(
                    a, b, k, stride=self.stride if i == last else 1, padding=self.padding if i == 0 else 0,
                    padding_mode=padding_mode if i == 0 else "zeros", bias=self.has_bias, device="meta", dtype=dtype,
                ),
                generator, torch.device(device),
            )
            for i, (a, b, k) in enumerate(zip(sizes[:-1], sizes[1:], kernel_sizes))
        ))

    _compose = staticmethod(compose_conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def _empty_compact(self) -> nn.Module:
        return _CONV[self.dim](
            self.in_channels, self.out_channels, self.kernel_size, stride=self.stride, padding=self.padding,
            padding_mode=self.padding_mode, bias=self.has_bias, device="meta",
        )

    def extra_repr(self) -> str:
        return (
            f"compact=Conv{self.dim}d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.has_bias})"
        )
