"""Scatter and gather between conv / locally-connected weights and dense eFCN weights.

A dense eFCN weight of shape ``(C_out * P_out, C_in * P_in)`` is viewed as
``(G, C_out/G, P_out, G, C_in/G, P_in)``; connections inside a group live on the diagonal of the two
group axes, which ``Tensor.diagonal`` exposes as a writable view of shape
``(C_out/G, P_out, C_in/G, P_in, G)``. :meth:`ConvGeometry.connections` lists every (output, input,
tap) triple, and one advanced-indexing assignment writes all channels of all of them at once. The ops
are out-of-place on a fresh tensor, hence differentiable.
"""

from __future__ import annotations

import torch

from .geometry import ConvGeometry


def _group_diagonal(dense: torch.Tensor, geometry: ConvGeometry) -> torch.Tensor:
    g = geometry
    blocks = dense.view(g.groups, g.out_per_group, g.out_positions, g.groups, g.in_per_group, g.in_positions)
    return blocks.diagonal(dim1=0, dim2=3)


def _is_conv_weight(weight: torch.Tensor, geometry: ConvGeometry) -> bool:
    return weight.dim() == 2 + geometry.dims


def _value_table(weight: torch.Tensor, geometry: ConvGeometry) -> tuple[torch.Tensor, int]:
    """Rows of ``(C_out/G, C_in/G, G)`` weights to gather connections from, and positions per tap.

    ``weight`` is a conv weight ``(C_out, C_in/G, *k)`` (one row per tap) or an eLCN weight
    ``(*out_size, *k, C_in/G, C_out)`` (one row per tap and output position, tap-major).
    """
    g = geometry
    if _is_conv_weight(weight, geometry):
        return weight.reshape(g.groups, g.out_per_group, g.in_per_group, g.taps).permute(3, 1, 2, 0).contiguous(), 1
    table = weight.reshape(g.out_positions, g.taps, g.in_per_group, g.groups, g.out_per_group).permute(1, 0, 4, 2, 3)
    return table.reshape(g.taps * g.out_positions, g.out_per_group, g.in_per_group, g.groups), g.out_positions


def _conv_to_local_order(dims: int) -> tuple[int, ...]:
    """Permutation of a conv weight ``(C_out, C_in/G, *k)`` into one position's eLCN filters ``(*k, C_in/G, C_out)``."""
    return (*range(2, 2 + dims), 1, 0)


def conv_as_local(weight: torch.Tensor, geometry: ConvGeometry) -> torch.Tensor:
    """A conv weight ``(C_out, C_in/G, *k)`` seen as an eLCN weight, shared over positions (no copy)."""
    filters = weight.permute(_conv_to_local_order(geometry.dims))
    return filters.expand(*geometry.out_size, *filters.shape)


def local_to_conv(weight: torch.Tensor, geometry: ConvGeometry) -> torch.Tensor:
    """Nearest conv weight in L2 to an eLCN weight: each filter entry is the mean of its copies over positions."""
    dims = geometry.dims
    means = weight.mean(dim=tuple(range(dims)))  # (*k, C_in/G, C_out)
    return means.permute(dims + 1, dims, *range(dims))


def local_from_legacy(weight: torch.Tensor, geometry: ConvGeometry) -> torch.Tensor:
    """An eLCN weight stored in the layout before positions came first, ``(C_out, C_in/G, *k, *out_size)``, in today's."""
    dims = geometry.dims
    return weight.permute(*range(2 + dims, 2 + 2 * dims), *range(2, 2 + dims), 1, 0).contiguous()


# Connections written per chunk: the gathered values of a chunk (about 4 MiB of float32) stay in cache
# instead of materialising all of them, which cost more in page faults than the scatter itself.
_CHUNK_VALUES = 1 << 20


def to_dense(weight: torch.Tensor, geometry: ConvGeometry) -> torch.Tensor:
    """Dense eFCN weight equal to a conv weight or an eLCN weight (see :func:`_value_table`).

    Taps that land on padding are dropped: the dense layer acts on the unpadded input.
    """
    dense = weight.new_zeros(geometry.dense_shape)
    diagonal = _group_diagonal(dense, geometry)
    out_index, in_index, tap_index = geometry.connections(device=weight.device)
    table, positions = _value_table(weight, geometry)
    rows = tap_index * positions + (out_index if positions > 1 else 0)
    step = max(1, _CHUNK_VALUES // (geometry.out_channels * geometry.in_per_group))
    for start in range(0, out_index.numel(), step):
        chunk = slice(start, start + step)
        diagonal[:, out_index[chunk], :, in_index[chunk], :] = table.index_select(0, rows[chunk])
    return dense


def dense_local_mask(geometry: ConvGeometry, device: torch.device | None = None) -> torch.Tensor:
    """Boolean mask of the dense entries that are copies of some filter entry."""
    mask = torch.zeros(geometry.dense_shape, dtype=torch.bool, device=device)
    out_index, in_index, _ = geometry.connections(device=device)
    _group_diagonal(mask, geometry)[:, out_index, :, in_index, :] = True
    return mask


def dense_to_conv(dense: torch.Tensor, geometry: ConvGeometry) -> torch.Tensor:
    """Nearest conv weight in L2: each filter entry is the mean of its copies in the dense matrix.

    Copies hidden by padding do not exist in the dense matrix and so do not count; a tap that only
    ever sees padding acts on nothing and comes back as zero.
    """
    g = geometry
    out_index, in_index, tap_index = geometry.connections(device=dense.device)
    copies = _group_diagonal(dense, geometry)[:, out_index, :, in_index, :]  # (n, C_out/G, C_in/G, G)
    sums = dense.new_zeros(g.taps, *copies.shape[1:]).index_add_(0, tap_index, copies)
    counts = torch.bincount(tap_index, minlength=g.taps).clamp(min=1).to(dense.dtype)
    means = sums / counts.view(-1, 1, 1, 1)
    return means.permute(3, 1, 2, 0).reshape(g.out_channels, g.in_per_group, *g.kernel_size)
