"""Layers of the relaxed spaces: locally-connected (eLCN) and dense embedded (eFCN) layers.

Both keep the conv's :class:`~embeddings.geometry.ConvGeometry`, take and return tensors shaped like
the conv's input and output, and so drop into any network in place of the conv they relax.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._blocks import dense_local_mask, local_from_legacy
from ._local_matmul import LocalMatmul, reference_products
from ._local_ops import ToChannelsFirst, dense, to_channels_first
from .geometry import ConvGeometry

__all__ = ["EmbeddedDense", "LocallyConnected1d", "LocallyConnected2d"]


def _check_input(layer: nn.Module, x: torch.Tensor, expected: tuple[int, ...]) -> None:
    if tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"{type(layer).__name__} was built for inputs of shape (N, {', '.join(map(str, expected))}) "
            f"but received {tuple(x.shape)}; embedded layers are tied to the input_shape given when embedding"
        )


def _uniform_init(weight: torch.Tensor, bias: torch.Tensor | None, fan_in: int, generator: torch.Generator | None) -> None:
    # PyTorch's default for Linear and Conv: kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    with torch.no_grad():
        weight.uniform_(-bound, bound, generator=generator)
        if bias is not None:
            bias.uniform_(-bound, bound, generator=generator)


def _check_shapes(cls: type, weight_shape: tuple[int, ...], bias_shape: tuple[int, ...],
                  weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    if tuple(weight.shape) != tuple(weight_shape) or (bias is not None and tuple(bias.shape) != tuple(bias_shape)):
        got = tuple(weight.shape), None if bias is None else tuple(bias.shape)
        raise ValueError(
            f"{cls.__name__}.from_weight expects weight {tuple(weight_shape)} and bias {tuple(bias_shape)} for this "
            f"geometry, got {got[0]} and {got[1]}; build the tensors from the same ConvGeometry"
        )


# Patch matrices are built in chunks of output rows of at most this many bytes, one chunk at a time in
# one reused buffer: glibc serves large buffers as fresh pages whose faults cost as much as the copy
# itself (vanilla2d at batch 100: the whole 41 MB patch matrix of layer 2 at once, 2.5-2.8x the CNN's
# step; 16 MiB chunks, 1.8-2.1x; 1-4 MiB chunks, 1.7-1.8x, 1 thread).
_PATCH_CHUNK_BYTES = 4 << 20


def _row_chunks(geometry: ConvGeometry, row_bytes_per_position: int) -> tuple[range, ...]:
    """Output rows (first spatial axis) split so that each chunk's patch matrix stays under the bound."""
    rows = geometry.out_size[0]
    row_bytes = row_bytes_per_position * (geometry.out_positions // rows)
    step = max(1, _PATCH_CHUNK_BYTES // max(1, row_bytes))
    return tuple(range(start, min(start + step, rows)) for start in range(0, rows, step))


def _adopt(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    # The layer was constructed on the meta device, so its own initial tensors cost nothing.
    layer.weight = weight if isinstance(weight, nn.Parameter) else nn.Parameter(weight)
    if bias is not None:
        layer.bias = bias if isinstance(bias, nn.Parameter) else nn.Parameter(bias)
    return layer


class EmbeddedDense(nn.Module):
    """A fully-connected layer that stands in for a convolution (eFCN layer).

    It computes ``y = W vec(x) + b`` with ``W`` of shape ``(C_out * P_out, C_in * P_in)`` acting on
    the *unpadded* flattened input, and reshapes ``y`` to the conv's output shape. Right after
    embedding, ``W`` is the conv's Toeplitz-like matrix; training moves it off the CNN subspace.

    Args:
        geometry: receptive-field geometry of the relaxed conv on its input size.
        bias: whether the layer has one bias per output unit (``C_out * P_out`` of them).
    """

    def __init__(self, geometry: ConvGeometry, *, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        self.geometry = geometry
        self.weight = nn.Parameter(torch.empty(geometry.dense_shape, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(geometry.dense_shape[0], device=device, dtype=dtype)) if bias else None
        self.reset_parameters()

    @classmethod
    def from_weight(cls, geometry: ConvGeometry, weight: torch.Tensor, bias: torch.Tensor | None = None) -> "EmbeddedDense":
        """An eFCN layer that adopts ``weight`` ``(C_out * P_out, C_in * P_in)`` and ``bias`` ``(C_out * P_out,)``.

        The tensors are used as they are (no copy); pass :class:`~torch.nn.Parameter` objects to choose
        ``requires_grad``. This is how :func:`~embeddings.to_efcn` builds layers from a conv's weights.
        """
        _check_shapes(cls, geometry.dense_shape, (geometry.dense_shape[0],), weight, bias)
        return _adopt(cls(geometry, bias=bias is not None, device="meta"), weight, bias)

    @property
    def in_features(self) -> int:
        return self.geometry.dense_shape[1]

    @property
    def out_features(self) -> int:
        return self.geometry.dense_shape[0]

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Standard dense initialisation (as ``nn.Linear``), i.e. a vanilla FCN layer."""
        _uniform_init(self.weight, self.bias, self.in_features, generator)

    def local_mask(self) -> torch.Tensor:
        """Boolean mask of ``weight``: True on entries that are copies of a filter entry (local blocks)."""
        return dense_local_mask(self.geometry, device=self.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(self, x, self.geometry.in_shape)
        return F.linear(x.flatten(1), self.weight, self.bias).view(-1, *self.geometry.out_shape)

    def extra_repr(self) -> str:
        g = self.geometry
        return (
            f"{g.in_shape} -> {g.out_shape}, dense {self.out_features}x{self.in_features}, kernel_size={g.kernel_size}, "
            f"stride={g.stride}, padding={g.padding}, dilation={g.dilation}, groups={g.groups}, bias={self.bias is not None}"
        )


class _LocallyConnectedNd(nn.Module):
    """Convolution without weight sharing: every output position has its own filter (eLCN layer).

    The weight has shape ``(*out_size, *kernel_size, C_in/groups, C_out)``: ``weight[position]`` is the
    filter bank applied at that output position, in the kernel-major, channels-last order of
    Keras' ``LocallyConnected2D`` (a conv weight ``w`` is ``w.permute(2, ..., 1, 0)`` at each position);
    the bias has the conv output's shape ``(C_out, *out_size)``. Positions come first so that the
    forward pass is one contiguous batched matmul over positions, ``(P, N, k C_in) @ (P, k C_in, C_out)``,
    on patches gathered from the channels-last padded input: no copy of the weight and no strided
    operand (with ``groups > 1`` the weight is regrouped, one copy per call). The gather, the matmul
    and the way back to ``(N, C_out, *out_size)`` are autograd Functions
    (:mod:`embeddings._local_matmul`, :mod:`embeddings._local_ops`) whose training-step backward keeps no
    patches and allocates one buffer per pass; higher derivatives and ``torch.func`` transforms go
    through autograd ops. Weights saved in the
    earlier layout ``(C_out, C_in/groups, *kernel_size, *out_size)`` are converted on
    ``load_state_dict``.
    """

    dims: int

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        in_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] | str = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        in_size = (in_size,) * self.dims if isinstance(in_size, int) else tuple(in_size)
        if len(in_size) != self.dims:
            raise ValueError(f"{type(self).__name__} needs an in_size of {self.dims} spatial entries, got {in_size}")
        self.geometry = ConvGeometry.create(
            in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size, in_size=in_size,
            stride=stride, padding=padding, dilation=dilation, groups=groups,
        )
        g = self.geometry
        self.weight = nn.Parameter(torch.empty(g.local_shape, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(g.out_shape, device=device, dtype=dtype)) if bias else None
        self.reset_parameters()

    @classmethod
    def from_geometry(cls, geometry: ConvGeometry, *, bias: bool = True, device=None, dtype=None) -> "_LocallyConnectedNd":
        g = geometry
        return cls(
            g.in_channels, g.out_channels, g.kernel_size, g.in_size, stride=g.stride, padding=g.padding,
            dilation=g.dilation, groups=g.groups, bias=bias, device=device, dtype=dtype,
        )

    @classmethod
    def from_weight(cls, geometry: ConvGeometry, weight: torch.Tensor, bias: torch.Tensor | None = None) -> "_LocallyConnectedNd":
        """An eLCN layer that adopts ``weight`` ``(*out_size, *k, C_in/G, C_out)`` and ``bias`` ``(C_out, *out_size)``.

        The tensors are used as they are (no copy); pass :class:`~torch.nn.Parameter` objects to choose
        ``requires_grad``. This is how :func:`~embeddings.to_elcn` builds layers from a conv's weights.
        """
        if geometry.dims != cls.dims:
            raise ValueError(f"{cls.__name__} needs a {cls.dims}-d geometry, got a {geometry.dims}-d one; use LocallyConnected{geometry.dims}d")
        _check_shapes(cls, geometry.local_shape, geometry.out_shape, weight, bias)
        return _adopt(cls.from_geometry(geometry, bias=bias is not None, device="meta"), weight, bias)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        g = self.geometry
        _uniform_init(self.weight, self.bias, g.in_per_group * g.taps, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.geometry
        _check_input(self, x, g.in_shape)
        batch, fan_in = x.shape[0], g.taps * g.in_per_group
        pads = [p for before, after in zip(reversed(g.pad_before), reversed(g.pad_after)) for p in (before, after)]
        # Channels last, so that the patch gather below copies runs of C_in contiguous values.
        x = F.pad(x, pads).movedim(1, -1).contiguous()
        weight = self.weight.reshape(g.out_positions, g.taps, g.in_per_group, g.groups, g.out_per_group)
        weight = weight.movedim(3, 1).reshape(g.out_positions * g.groups, fan_in, g.out_per_group)
        # The bias in the products' positions-first layout, added by the matmul itself (beta = 1).
        bias = self.bias
        if bias is not None:
            bias = bias.reshape(g.groups, g.out_per_group, g.out_positions).permute(2, 0, 1).reshape(-1, 1, g.out_per_group)
        rows = _row_chunks(g, batch * g.taps * g.in_channels * x.element_size())
        if dense(x, weight, bias):
            return ToChannelsFirst.apply(LocalMatmul.apply(x, weight, bias, g, rows), g)
        # Under torch.func transforms (wrapped or batched tensors) plain aten ops run faster than Functions,
        # whose every call goes through functorch's custom-function machinery (1.7x on a recomputed HVP).
        return to_channels_first(reference_products(x, weight, bias, g, rows), g).contiguous()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Checkpoints written before positions came first hold (C_out, C_in/G, *k, *out_size).
        key, g = prefix + "weight", self.geometry
        legacy = (g.out_channels, g.in_per_group, *g.kernel_size, *g.out_size)
        weight = state_dict.get(key)
        if weight is not None and tuple(weight.shape) == legacy != g.local_shape:
            state_dict[key] = local_from_legacy(weight, g)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        g = self.geometry
        return (
            f"{g.in_channels}, {g.out_channels}, kernel_size={g.kernel_size}, in_size={g.in_size}, out_size={g.out_size}, "
            f"stride={g.stride}, padding={g.padding}, dilation={g.dilation}, groups={g.groups}, bias={self.bias is not None}"
        )


class LocallyConnected1d(_LocallyConnectedNd):
    """Locally-connected layer on sequences ``(N, C, L)``; see :class:`_LocallyConnectedNd`.

    Example:
        >>> layer = LocallyConnected1d(2, 3, kernel_size=3, in_size=10, padding=1)
        >>> tuple(layer.weight.shape), tuple(layer(torch.zeros(4, 2, 10)).shape)
        ((10, 3, 2, 3), (4, 3, 10))
    """

    dims = 1


class LocallyConnected2d(_LocallyConnectedNd):
    """Locally-connected layer on images ``(N, C, H, W)``; see :class:`_LocallyConnectedNd`."""

    dims = 2
