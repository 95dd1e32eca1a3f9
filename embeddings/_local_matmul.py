"""The eLCN's products ``bias + patches(x) @ W`` per output position, with a training-step fast path.

A plain ``loss.backward()`` (the training loop's) runs :class:`LocalMatmul`'s own backward: the patches
are gathered again chunk by chunk instead of being kept from the forward pass, and each chunk's weight
gradient is written straight into one buffer. Composed from autograd's ops, the same step would keep
every patch matrix alive between the passes and rebuild the weight gradient with a ``cat``: both are
fresh allocations the size of the weight (26 MB on vanilla2d's second layer at batch 100), and glibc
hands such buffers over as new pages whose faults cost as much as the arithmetic (that ``cat`` alone
took 16 ms of a 140 ms step).

A backward pass that builds a graph (``create_graph=True``: the cached Hessian products) runs the
same arithmetic from autograd ops and the linear maps of :mod:`embeddings._local_ops`, so higher
derivatives come from autograd itself; forward-mode tangents come from :func:`reference_products`
(aten ops only). Under ``torch.func`` transforms the layer does not call this Function at all (see
``_LocallyConnectedNd.forward``).
"""

from __future__ import annotations

import torch

from ._local_ops import GatherPatches, Rows, ScatterPatches, chunk_sizes, dense, patches, scatter_add, window
from .geometry import ConvGeometry


def reference_products(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, geometry: ConvGeometry, rows: Rows,
                       *, out: torch.Tensor | None = None) -> torch.Tensor:
    """``(P * G, N, C_out/G)`` products of a channels-last padded ``x``, ``weight`` ``(P * G, k C_in/G, C_out/G)`` and ``bias`` ``(P * G, 1, C_out/G)``.

    Without ``out``, in aten ops only (differentiable under every transform). With ``out`` (plain tensors),
    the products are written into it and every chunk's patches into one reused buffer.
    """
    sizes, batch = chunk_sizes(geometry, rows), x.shape[0]
    buffer = None if out is None else _chunk_buffer(x, geometry, rows)
    targets = [None] * len(rows) if out is None else out.split(sizes)
    biases = [None] * len(rows) if bias is None else bias.split(sizes)
    products = []
    for chunk, chunk_weight, chunk_bias, target in zip(rows, weight.split(sizes), biases, targets):
        chunk_patches = patches(window(x, geometry, chunk), geometry, out=buffer)
        products.append(torch.bmm(chunk_patches, chunk_weight, out=target) if chunk_bias is None
                        else torch.baddbmm(chunk_bias.expand(-1, batch, -1), chunk_patches, chunk_weight, out=target))
    if out is not None:
        return out
    return torch.cat(products) if len(products) > 1 else products[0]


def _graph_backward(x, weight, bias, grad, geometry: ConvGeometry, rows: Rows, needs: tuple[bool, ...]):
    """The backward pass in autograd ops, so that it can be differentiated again."""
    sizes = chunk_sizes(geometry, rows)
    grad_x = grad_weight = grad_bias = None
    if needs[1]:
        grad_weight = torch.cat([torch.bmm(GatherPatches.apply(x, geometry, (chunk,))[0].transpose(1, 2), g)
                                 for chunk, g in zip(rows, grad.split(sizes))])
    if needs[0]:
        parts = [torch.bmm(g, w.transpose(1, 2)) for g, w in zip(grad.split(sizes), weight.split(sizes))]
        grad_x = ScatterPatches.apply(geometry, rows, x.shape, *parts)
    if bias is not None and needs[2]:
        grad_bias = grad.sum(1, keepdim=True)
    return grad_x, grad_weight, grad_bias


def _chunk_buffer(x: torch.Tensor, geometry: ConvGeometry, rows: Rows) -> torch.Tensor:
    """One buffer for the patch matrix of the largest chunk, reused by every chunk: one allocation per pass."""
    return x.new_empty(max(chunk_sizes(geometry, rows)) * x.shape[0] * geometry.taps * geometry.in_per_group)


def _step_backward(x, weight, bias, grad, geometry: ConvGeometry, rows: Rows, needs: tuple[bool, ...]):
    """The backward pass of a training step: patches gathered again, weight gradient written in place."""
    grad = grad.contiguous()
    grad_x = x.new_zeros(x.shape) if needs[0] else None
    grad_weight = torch.empty_like(weight) if needs[1] else None
    buffer, sizes = _chunk_buffer(x, geometry, rows), chunk_sizes(geometry, rows)
    weight_grads = [None] * len(rows) if grad_weight is None else grad_weight.split(sizes)
    for chunk, g, w, target in zip(rows, grad.split(sizes), weight.split(sizes), weight_grads):
        if target is not None:
            torch.bmm(patches(window(x, geometry, chunk), geometry, out=buffer).transpose(1, 2), g, out=target)
        if grad_x is not None:
            # The patches' gradient has their shape, so it reuses their buffer once they have been used.
            grad_patches = buffer[: g.shape[0] * g.shape[1] * w.shape[1]].view(g.shape[0], g.shape[1], w.shape[1])
            scatter_add(grad_x, torch.bmm(g, w.transpose(1, 2), out=grad_patches), geometry, chunk)
    grad_bias = grad.sum(1, keepdim=True) if bias is not None and needs[2] else None
    return grad_x, grad_weight, grad_bias


class LocalMatmul(torch.autograd.Function):
    """:func:`reference_products` with a backward that keeps no patches; see the module docstring."""

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, geometry: ConvGeometry, rows: Rows) -> torch.Tensor:
        out = x.new_empty(sum(chunk_sizes(geometry, rows)), x.shape[0], weight.shape[-1])
        return reference_products(x, weight, bias, geometry, rows, out=out)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, weight, bias, ctx.geometry, ctx.rows = inputs
        ctx.save_for_backward(x, weight, bias)
        ctx.save_for_forward(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight, bias = ctx.saved_tensors
        # Grad mode is on here exactly when the caller builds a graph of this backward (create_graph, torch.func).
        fast = not torch.is_grad_enabled() and dense(x, weight, bias, grad)
        backward = _step_backward if fast else _graph_backward
        return (*backward(x, weight, bias, grad, ctx.geometry, ctx.rows, ctx.needs_input_grad), None, None)

    @staticmethod
    def jvp(ctx, x_tangent, weight_tangent, bias_tangent, *_):
        # Bilinear in (x, weight), affine in bias: the tangent is the products with one factor replaced by its tangent.
        x, weight, bias = ctx.saved_tensors
        out = None
        if x_tangent is not None:
            out = reference_products(x_tangent, weight, None, ctx.geometry, ctx.rows)
        if weight_tangent is not None or bias_tangent is not None:
            w = torch.zeros_like(weight) if weight_tangent is None else weight_tangent
            term = reference_products(x, w, bias_tangent, ctx.geometry, ctx.rows)
            out = term if out is None else out + term
        return out
