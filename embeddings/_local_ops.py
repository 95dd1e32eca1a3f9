"""The two linear maps around the eLCN's batched matmul, as autograd Functions whose backward is their adjoint.

An eLCN layer is ``relayout(bmm(gather(x), W))``: ``gather`` copies the patches of a padded channels-last
input into positions-first chunks ``(P_c * G, N, k * C_in/G)``, and ``relayout`` writes the chunks of
products back as the conv's ``(N, C_out, *out_size)``. Autograd's own backward of both is slow on the CPU:
the backward of ``unfold -> permute -> reshape`` is a generic index scatter (56 ms for the 41 MB of patches
of vanilla2d's second layer at batch 100, against 10 ms for one strided add per kernel tap here), and the
backward of the permute hands ``bmm`` a gradient whose every matrix is strided, so ``bmm`` copies them one
by one (435 copies per vanilla2d step; here the gradient is laid out once, contiguously).

Each map is linear, so its backward is the other map's adjoint applied through ``apply`` (double backward,
hence Hessian products, works), its ``jvp`` is the map itself, and its ``vmap`` rule folds the vmapped
axis into the batch axis (the maps act on each example alone): batched output gradients of a graph built
outside ``vmap`` reach these rules. Batched tensors of the legacy vmap (``gradcheck``'s batched checks,
``torch.autograd.functional`` with ``vectorize=True``) own no memory and take aten ops instead
(:func:`dense`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from .geometry import ConvGeometry

Rows = tuple[range, ...]


def dense(*tensors: torch.Tensor | None) -> bool:
    """Whether every tensor owns memory: batched and wrapped tensors of ``vmap`` and ``jvp`` do not, and have no ``out=`` rules."""
    try:
        for tensor in tensors:
            if tensor is not None:
                tensor.untyped_storage()
    except NotImplementedError:
        return False
    return True


def patches(x: torch.Tensor, geometry: ConvGeometry, out: torch.Tensor | None = None) -> torch.Tensor:
    """Patches ``(P * G, N, k * C_in/G)`` of a padded channels-last input ``(N, *size, C_in)``, in one copy.

    With ``out``, the patches are written into its leading entries and that view is returned.
    """
    g, dims, batch = geometry, geometry.dims, x.shape[0]
    for axis, (size, stride, dilation) in enumerate(zip(g.kernel_size, g.stride, g.dilation), start=1):
        x = x.unfold(axis, (size - 1) * dilation + 1, stride)
        if dilation > 1:
            x = x[..., ::dilation]
    x = x.view(*x.shape[: 1 + dims], g.groups, g.in_per_group, *x.shape[2 + dims :])  # (N, *out, G, C_in/G, *k)
    x = x.permute((*range(1, 1 + dims), 1 + dims, 0, *range(3 + dims, 3 + 2 * dims), 2 + dims))
    if out is None:
        return x.reshape(-1, batch, g.taps * g.in_per_group)
    out = out.flatten()[: x.numel()]
    out.view(x.shape).copy_(x)
    return out.view(-1, batch, g.taps * g.in_per_group)


def window(x: torch.Tensor, geometry: ConvGeometry, rows: range) -> torch.Tensor:
    """The input rows (first spatial axis of a channels-last ``x``) that output ``rows`` read."""
    span = (geometry.kernel_size[0] - 1) * geometry.dilation[0] + 1
    return x.narrow(1, rows.start * geometry.stride[0], (len(rows) - 1) * geometry.stride[0] + span)


def chunk_sizes(geometry: ConvGeometry, rows: Rows) -> list[int]:
    """Products (positions x groups) per chunk of output rows: the leading size of each chunk's patch matrix."""
    per_row = geometry.out_positions // geometry.out_size[0] * geometry.groups
    return [len(chunk) * per_row for chunk in rows]


def _gather(x: torch.Tensor, geometry: ConvGeometry, rows: Rows) -> tuple[torch.Tensor, ...]:
    # Copies, never views: a Function may not return a view of its input (a 1x1 kernel's patches can be one).
    if not dense(x):  # batched tensors of the legacy vmap have no out= rules
        return tuple(patches(window(x, geometry, chunk), geometry).clone() for chunk in rows)
    entries = x.shape[0] * geometry.taps * geometry.in_per_group  # of one product's patches
    return tuple(patches(window(x, geometry, chunk), geometry, out=x.new_empty(size * entries))
                 for chunk, size in zip(rows, chunk_sizes(geometry, rows)))


def scatter_add(out: torch.Tensor, grad: torch.Tensor, geometry: ConvGeometry, chunk: range) -> None:
    """Add the patch chunk ``grad`` (of output rows ``chunk``) back where read it in ``out``, one strided add per tap."""
    g, dims = geometry, geometry.dims
    rows_read = window(out.unflatten(-1, (g.groups, g.in_per_group)), g, chunk)  # (N, *size, G, C_in/G), a view
    # (rows, *out[1:], G, N, *k, C_in/G) -> per tap (N, rows, *out[1:], G, C_in/G)
    grad = grad.reshape(len(chunk), *g.out_size[1:], g.groups, grad.shape[1], *g.kernel_size, g.in_per_group)
    grad = grad.permute(1 + dims, *range(dims), dims, *range(2 + dims, 2 + 2 * dims), 2 + 2 * dims)
    sizes = (len(chunk), *g.out_size[1:])
    for tap in itertools.product(*(range(k) for k in g.kernel_size)):
        target = rows_read[(slice(None), *(slice(t * d, t * d + (n - 1) * s + 1, s) for t, d, s, n in zip(tap, g.dilation, g.stride, sizes)))]
        target.add_(grad[(slice(None),) * (2 + dims) + tap])


def _scatter(grads: Sequence[torch.Tensor], geometry: ConvGeometry, rows: Rows, padded_shape: torch.Size) -> torch.Tensor:
    """The adjoint of :func:`_gather`."""
    if not dense(*grads):
        # Batched tensors of the legacy vmap (gradcheck, torch.autograd.functional) cannot be added into a
        # buffer: autograd's own backward of the gather takes them.
        with torch.enable_grad():
            probe = torch.zeros(padded_shape, dtype=grads[0].dtype, device=grads[0].device, requires_grad=True)
            return torch.autograd.grad(_gather(probe, geometry, rows), probe, grads)[0]
    out = grads[0].new_zeros(padded_shape)
    for chunk, grad in zip(rows, grads):
        scatter_add(out, grad, geometry, chunk)
    return out


def to_channels_first(products: torch.Tensor, geometry: ConvGeometry) -> torch.Tensor:
    """Products ``(P * G, N, C_out/G)`` as the conv's output ``(N, C_out, *out_size)``: a view where one exists."""
    g, batch = geometry, products.shape[1]
    values = products.reshape(*g.out_size, g.groups, batch, g.out_per_group).permute(1 + g.dims, g.dims, 2 + g.dims, *range(g.dims))
    return values.reshape(batch, *g.out_shape)


class GatherPatches(torch.autograd.Function):
    """``(N, *padded, C_in)`` channels-last -> one patch matrix ``(P_c * G, N, k * C_in/G)`` per chunk of output rows."""

    @staticmethod
    def forward(x: torch.Tensor, geometry: ConvGeometry, rows: Rows) -> tuple[torch.Tensor, ...]:
        return _gather(x, geometry, rows)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, ctx.geometry, ctx.rows = inputs
        ctx.padded_shape = x.shape

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        return ScatterPatches.apply(ctx.geometry, ctx.rows, ctx.padded_shape, *grads), None, None

    @staticmethod
    def jvp(ctx, x_tangent: torch.Tensor, *_):
        return GatherPatches.apply(x_tangent, ctx.geometry, ctx.rows)

    @staticmethod
    def vmap(info, in_dims, x: torch.Tensor, geometry: ConvGeometry, rows: Rows):
        if in_dims[0] is None:
            return GatherPatches.apply(x, geometry, rows), (None,) * len(rows)
        x = x.movedim(in_dims[0], 0)
        patches = GatherPatches.apply(x.flatten(0, 1), geometry, rows)
        return tuple(p.unflatten(1, x.shape[:2]) for p in patches), (1,) * len(rows)


class ScatterPatches(torch.autograd.Function):
    """The adjoint of :class:`GatherPatches`: patch chunks -> the channels-last padded input's shape."""

    @staticmethod
    def forward(geometry: ConvGeometry, rows: Rows, padded_shape: torch.Size, *grads: torch.Tensor) -> torch.Tensor:
        return _scatter(grads, geometry, rows, padded_shape)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.geometry, ctx.rows, ctx.padded_shape = inputs[:3]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, None, None, *GatherPatches.apply(grad, ctx.geometry, ctx.rows)

    @staticmethod
    def jvp(ctx, _g, _r, _s, *tangents: torch.Tensor):
        return ScatterPatches.apply(ctx.geometry, ctx.rows, ctx.padded_shape, *tangents)

    @staticmethod
    def vmap(info, in_dims, geometry: ConvGeometry, rows: Rows, padded_shape: torch.Size, *grads: torch.Tensor):
        batch = padded_shape[0]
        # Fold the vmapped axis into the batch axis (1) of every chunk; an unbatched chunk is repeated.
        folded = [(g.unsqueeze(0).expand(info.batch_size, *g.shape) if d is None else g.movedim(d, 0)).movedim(0, 1).flatten(1, 2)
                  for g, d in zip(grads, in_dims[3:])]
        out = ScatterPatches.apply(geometry, rows, (info.batch_size * batch, *padded_shape[1:]), *folded)
        return out.unflatten(0, (info.batch_size, batch)), 0


class _Relayout(torch.autograd.Function):
    """A copy into another layout with a batch axis at ``batch_in`` (input) and ``batch_out`` (output), and its ``adjoint``."""

    batch_in: int
    batch_out: int
    adjoint: type[_Relayout]

    @classmethod
    def setup_context(cls, ctx, inputs, output) -> None:
        ctx.geometry = inputs[1]

    @classmethod
    def backward(cls, ctx, grad: torch.Tensor):
        return cls.adjoint.apply(grad, ctx.geometry), None

    @classmethod
    def jvp(cls, ctx, tangent: torch.Tensor, _):
        return cls.apply(tangent, ctx.geometry)

    @classmethod
    def vmap(cls, info, in_dims, t: torch.Tensor, geometry: ConvGeometry):
        # The maps act on each example alone: the vmapped axis is folded into the batch axis and back.
        if in_dims[0] is None:
            return cls.apply(t, geometry), None
        t = t.movedim(in_dims[0], cls.batch_in)
        folded = cls.apply(t.flatten(cls.batch_in, cls.batch_in + 1), geometry)
        return folded.unflatten(cls.batch_out, t.shape[cls.batch_in : cls.batch_in + 2]), cls.batch_out


class ToChannelsFirst(_Relayout):
    """Products ``(P * G, N, C_out/G)`` -> the conv's output ``(N, C_out, *out_size)``, contiguous."""

    batch_in, batch_out = 1, 0

    @staticmethod
    def forward(products: torch.Tensor, geometry: ConvGeometry) -> torch.Tensor:
        # A clone: a Function may not return a view of its input.
        return to_channels_first(products, geometry).clone(memory_format=torch.contiguous_format)


class FromChannelsFirst(_Relayout):
    """The adjoint of :class:`ToChannelsFirst`: ``(N, C_out, *out_size)`` -> contiguous products ``(P * G, N, C_out/G)``."""

    batch_in, batch_out = 0, 1

    @staticmethod
    def forward(y: torch.Tensor, geometry: ConvGeometry) -> torch.Tensor:
        g, batch = geometry, y.shape[0]
        grouped = y.reshape(batch, g.groups, g.out_per_group, *g.out_size)
        # A contiguous copy: a reshape alone can return a strided view, which bmm would copy matrix by matrix.
        products = grouped.permute(*range(3, 3 + g.dims), 1, 0, 2).clone(memory_format=torch.contiguous_format)
        return products.view(-1, batch, g.out_per_group)


ToChannelsFirst.adjoint, FromChannelsFirst.adjoint = FromChannelsFirst, ToChannelsFirst
