"""Scatter and gather between locally-connected weights and dense eFCN weights, one tap at a time.

A dense eFCN weight of shape ``(C_out * P_out, C_in * P_in)`` is viewed as
``(G, C_out/G, P_out, G, C_in/G, P_in)``; connections inside a group live on the diagonal of the two
group axes, which ``Tensor.diagonal`` exposes as a writable view of shape
``(C_out/G, P_out, C_in/G, P_in, G)``. For each kernel tap, :meth:`ConvGeometry.tap_pairs` gives the
(output, input) positions it connects, and one advanced-indexing assignment writes all channels and
all positions of that tap at once. The ops are out-of-place on a fresh tensor, hence differentiable.
"""

from __future__ import annotations

import torch

from .geometry import ConvGeometry


def _group_diagonal(dense: torch.Tensor, geometry: ConvGeometry) -> torch.Tensor:
    g = geometry
    blocks = dense.view(g.groups, g.out_per_group, g.out_positions, g.groups, g.in_per_group, g.in_positions)
    return blocks.diagonal(dim1=0, dim2=3)


def _tap_values(local_weight: torch.Tensor, geometry: ConvGeometry, tap: tuple[int, ...], out_index: torch.Tensor) -> torch.Tensor:
    """Weights of one tap at the given output positions, laid out as ``(n, C_out/G, C_in/G, G)``."""
    g = geometry
    per_position = local_weight[(slice(None), slice(None), *tap)].reshape(g.out_channels, g.in_per_group, g.out_positions)
    picked = per_position[:, :, out_index]
    return picked.view(g.groups, g.out_per_group, g.in_per_group, -1).permute(3, 1, 2, 0)


def conv_as_local(weight: torch.Tensor, geometry: ConvGeometry) -> torch.Tensor:
    """A conv weight ``(C_out, C_in/G, *k)`` seen as an eLCN weight, shared over positions (no copy)."""
    trailing = (1,) * geometry.dims
    return weight.view(*weight.shape, *trailing).expand(*weight.shape, *geometry.out_size)


def local_to_dense(local_weight: torch.Tensor, geometry: ConvGeometry) -> torch.Tensor:
    """Dense eFCN weight equal to the locally-connected weight ``(C_out, C_in/G, *k, *out_size)``.

    Taps that land on padding are dropped: the dense layer acts on the unpadded input.
    """
    dense = local_weight.new_zeros(geometry.dense_shape)
    diagonal = _group_diagonal(dense, geometry)
    for tap in geometry.tap_offsets():
        out_index, in_index = geometry.tap_pairs(tap, device=local_weight.device)
        diagonal[:, out_index, :, in_index, :] = _tap_values(local_weight, geometry, tap, out_index)
    return dense


def dense_local_mask(geometry: ConvGeometry, device: torch.device | None = None) -> torch.Tensor:
    """Boolean mask of the dense entries that are copies of some locally-connected weight."""
    mask = torch.zeros(geometry.dense_shape, dtype=torch.bool, device=device)
    diagonal = _group_diagonal(mask, geometry)
    for tap in geometry.tap_offsets():
        out_index, in_index = geometry.tap_pairs(tap, device=device)
        diagonal[:, out_index, :, in_index, :] = True
    return mask


def dense_to_conv(dense: torch.Tensor, geometry: ConvGeometry) -> torch.Tensor:
    """Nearest conv weight in L2: each filter entry is the mean of its copies in the dense matrix.

    Copies hidden by padding do not exist in the dense matrix and so do not count.
    """
    g = geometry
    diagonal = _group_diagonal(dense, geometry)
    weight = dense.new_zeros(g.out_channels, g.in_per_group, *g.kernel_size)
    for tap in geometry.tap_offsets():
        out_index, in_index = geometry.tap_pairs(tap, device=dense.device)
        if out_index.numel() == 0:
            continue  # a tap that only ever sees padding has no copy: it stays at zero, as it acts on nothing
        copies = diagonal[:, out_index, :, in_index, :]  # (n, C_out/G, C_in/G, G)
        weight[(slice(None), slice(None), *tap)] = copies.mean(0).permute(2, 0, 1).reshape(g.out_channels, g.in_per_group)
    return weight
