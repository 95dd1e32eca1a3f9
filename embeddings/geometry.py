"""Receptive-field geometry shared by convolutions, locally-connected and embedded dense layers.

A convolution of kernel ``k``, stride ``s``, dilation ``d`` and left padding ``p`` connects output
position ``o`` to input position ``i = o*s - p + t*d`` through kernel tap ``t``. Everything the
embeddings build -- the eFCN matrix, the local mask, the projection back onto the CNN -- is a
scatter or a gather along these (output, input) pairs, one kernel tap at a time, so no Python loop
ever runs over output positions.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

__all__ = ["ConvGeometry"]


def _per_dim(value: int | Sequence[int], dims: int) -> tuple[int, ...]:
    return (int(value),) * dims if isinstance(value, int) else tuple(int(v) for v in value)


@dataclass(frozen=True)
class ConvGeometry:
    """Shapes and index maps of one convolution-like layer on a fixed input size.

    Attributes:
        in_channels, out_channels, groups: as in ``nn.Conv2d``.
        kernel_size, stride, dilation: one entry per spatial dimension.
        pad_before, pad_after: zero padding on each side of each spatial dimension (asymmetric for
            ``padding='same'`` with even kernels, as PyTorch does it).
        in_size, out_size: spatial sizes of the (unpadded) input and of the output.
        padding: the padding argument as the user gave it (int, tuple, 'same' or 'valid'), kept so
            that a convolution can be rebuilt identically.
    """

    in_channels: int
    out_channels: int
    groups: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pad_before: tuple[int, ...]
    pad_after: tuple[int, ...]
    in_size: tuple[int, ...]
    out_size: tuple[int, ...]
    padding: int | tuple[int, ...] | str

    @classmethod
    def create(
        cls,
        *,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        in_size: Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] | str = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
    ) -> "ConvGeometry":
        """Geometry of a convolution with PyTorch's conventions on an input of spatial size ``in_size``.

        Example:
            >>> g = ConvGeometry.create(in_channels=1, out_channels=1, kernel_size=3, in_size=(4, 4))
            >>> g.out_size, g.dense_shape
            ((2, 2), (4, 16))
        """
        in_size = tuple(int(s) for s in in_size)
        dims = len(in_size)
        kernel_size = _per_dim(kernel_size, dims)
        stride = _per_dim(stride, dims)
        dilation = _per_dim(dilation, dims)
        if isinstance(padding, str):
            if padding == "valid":
                pad_before = pad_after = (0,) * dims
            elif padding == "same":
                totals = [d * (k - 1) for d, k in zip(dilation, kernel_size)]
                pad_before = tuple(t // 2 for t in totals)
                pad_after = tuple(t - t // 2 for t in totals)
            else:
                raise ValueError(f"padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
            padding_spec: int | tuple[int, ...] | str = padding
        else:
            pad_before = pad_after = _per_dim(padding, dims)
            padding_spec = pad_before
        out_size = tuple(
            (n + pb + pa - d * (k - 1) - 1) // s + 1
            for n, pb, pa, d, k, s in zip(in_size, pad_before, pad_after, dilation, kernel_size, stride)
        )
        if any(o <= 0 for o in out_size):
            raise ValueError(
                f"a kernel of size {kernel_size} (dilation {dilation}) does not fit an input of size {in_size} "
                f"padded by {pad_before}/{pad_after}: the output would be empty"
            )
        for name, values in (("kernel_size", kernel_size), ("stride", stride), ("dilation", dilation)):
            if len(values) != dims or any(v <= 0 for v in values):
                raise ValueError(f"{name} must hold {dims} positive integers, got {values}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        return cls(
            in_channels=int(in_channels), out_channels=int(out_channels), groups=int(groups),
            kernel_size=kernel_size, stride=stride, dilation=dilation, pad_before=pad_before,
            pad_after=pad_after, in_size=in_size, out_size=out_size, padding=padding_spec,
        )

    @property
    def dims(self) -> int:
        return len(self.in_size)

    @property
    def in_positions(self) -> int:
        return math.prod(self.in_size)

    @property
    def out_positions(self) -> int:
        return math.prod(self.out_size)

    @property
    def taps(self) -> int:
        return math.prod(self.kernel_size)

    @property
    def in_per_group(self) -> int:
        return self.in_channels // self.groups

    @property
    def out_per_group(self) -> int:
        return self.out_channels // self.groups

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (self.in_channels, *self.in_size)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.out_channels, *self.out_size)

    @property
    def dense_shape(self) -> tuple[int, int]:
        """Shape of the eFCN weight: (C_out * prod(out_size), C_in * prod(in_size))."""
        return (self.out_channels * self.out_positions, self.in_channels * self.in_positions)

    @property
    def local_shape(self) -> tuple[int, ...]:
        """Shape of the eLCN weight: (*out_size, *kernel_size, C_in / groups, C_out), one filter bank per position."""
        return (*self.out_size, *self.kernel_size, self.in_per_group, self.out_channels)

    def tap_offsets(self) -> Iterator[tuple[int, ...]]:
        """Kernel taps as multi-indices, in the row-major order of a flattened kernel."""
        return itertools.product(*(range(k) for k in self.kernel_size))

    def tap_pairs(self, tap: tuple[int, ...], device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat (output, input) positions that kernel tap ``tap`` connects, padding positions dropped.

        Example:
            >>> g = ConvGeometry.create(in_channels=1, out_channels=1, kernel_size=3, in_size=(5,), padding=1)
            >>> [t.tolist() for t in g.tap_pairs((0,))]
            [[1, 2, 3, 4], [0, 1, 2, 3]]
        """
        out_flat = torch.zeros((), dtype=torch.long, device=device)
        in_flat = torch.zeros((), dtype=torch.long, device=device)
        valid = torch.ones((), dtype=torch.bool, device=device)
        for t, n_in, n_out, s, d, p in zip(tap, self.in_size, self.out_size, self.stride, self.dilation, self.pad_before):
            out_pos = torch.arange(n_out, device=device)
            in_pos = out_pos * s - p + t * d
            # Row-major flattening: grow the index grids one spatial dimension at a time.
            out_flat = out_flat.unsqueeze(-1) * n_out + out_pos
            in_flat = in_flat.unsqueeze(-1) * n_in + in_pos.clamp(0, n_in - 1)
            valid = valid.unsqueeze(-1) & (in_pos >= 0) & (in_pos < n_in)
        return out_flat[valid], in_flat[valid]

    def connections(self, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All (output, input, tap) triples of the layer, sorted by output then input position.

        Sorting makes a scatter into the dense eFCN weight walk through it row block by row block,
        which is several times faster than tap by tap (each tap touches every row).

        Example:
            >>> g = ConvGeometry.create(in_channels=1, out_channels=1, kernel_size=2, in_size=(3,))
            >>> [t.tolist() for t in g.connections()]
            [[0, 0, 1, 1], [0, 1, 1, 2], [0, 1, 0, 1]]
        """
        pairs = [self.tap_pairs(tap, device) for tap in self.tap_offsets()]
        out_index = torch.cat([o for o, _ in pairs])
        in_index = torch.cat([i for _, i in pairs])
        tap_index = torch.cat([torch.full_like(o, t) for t, (o, _) in enumerate(pairs)])
        order = torch.argsort(out_index * self.in_positions + in_index)
        return out_index[order], in_index[order], tap_index[order]
