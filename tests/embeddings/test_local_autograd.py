"""The eLCN's custom autograd: first and second derivatives, forward mode and every transform, against finite differences and autograd."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad, jvp, vmap

import embeddings.layers
from embeddings import LocallyConnected1d, LocallyConnected2d

GEOMETRIES = [
    (LocallyConnected1d, dict(in_channels=4, out_channels=4, kernel_size=3, in_size=9, stride=2, dilation=2, padding=2, groups=2), (2, 4, 9)),
    (LocallyConnected2d, dict(in_channels=2, out_channels=2, kernel_size=(2, 3), in_size=(4, 5), stride=(1, 2), dilation=(2, 1), padding=(1, 0)), (2, 2, 4, 5)),
    (LocallyConnected2d, dict(in_channels=2, out_channels=2, kernel_size=1, in_size=(3, 3), bias=False), (1, 2, 3, 3)),  # 1x1: patches of a view
]


def _layer_and_inputs(cls, kwargs, shape, dtype=torch.float64):
    torch.manual_seed(0)
    layer = cls(**kwargs, dtype=dtype)
    x = torch.randn(*shape, dtype=dtype, requires_grad=True)
    params = {name: p.detach().clone().requires_grad_() for name, p in layer.named_parameters()}
    return layer, x, params


@pytest.mark.parametrize("cls, kwargs, shape", GEOMETRIES)
@pytest.mark.parametrize("chunk_bytes", [None, 1])  # 1: one output row per chunk
def test_first_and_second_derivatives_match_finite_differences(cls, kwargs, shape, chunk_bytes, monkeypatch):
    if chunk_bytes is not None:
        monkeypatch.setattr(embeddings.layers, "_PATCH_CHUNK_BYTES", chunk_bytes)
    layer, x, params = _layer_and_inputs(cls, kwargs, shape)
    names = tuple(params)

    def f(x, *values):
        return functional_call(layer, dict(zip(names, values)), (x,))

    inputs = (x, *params.values())
    # Backward (the training step's path), forward mode, and both under the legacy vmap of gradcheck.
    assert torch.autograd.gradcheck(f, inputs, check_forward_ad=True, check_batched_grad=True, check_batched_forward_grad=True)
    # Second order: reverse over reverse (create_graph, Hessian products) and forward over reverse.
    assert torch.autograd.gradgradcheck(f, inputs, check_fwd_over_rev=True)


@pytest.mark.parametrize("cls, kwargs, shape", GEOMETRIES[:2])
def test_training_step_gradients_equal_the_graph_building_ones(cls, kwargs, shape, monkeypatch):
    # loss.backward() takes the buffered path, torch.func.grad the one that builds a graph: same numbers.
    monkeypatch.setattr(embeddings.layers, "_PATCH_CHUNK_BYTES", 1)
    layer, x, params = _layer_and_inputs(cls, kwargs, shape, dtype=torch.float32)
    target = torch.randn(layer(x).shape)

    def loss(params, x):
        return ((functional_call(layer, params, (x,)) - target) ** 2).sum()

    loss(params, x).backward()
    graph_built = grad(loss, argnums=(0, 1))(params, x.detach())
    for name, p in params.items():
        torch.testing.assert_close(p.grad, graph_built[0][name], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x.grad, graph_built[1], rtol=1e-5, atol=1e-6)


def test_vmap_over_stacked_parameters_and_inputs_equals_a_loop():
    cls, kwargs, shape = GEOMETRIES[1]
    layer, x, params = _layer_and_inputs(cls, kwargs, shape, dtype=torch.float32)
    stacked = {name: torch.stack([p.detach() + 0.1 * k for k in range(3)]) for name, p in params.items()}
    xs = torch.randn(3, *shape)
    batched = vmap(lambda p, x: functional_call(layer, p, (x,)))(stacked, xs)
    looped = torch.stack([functional_call(layer, {n: v[k] for n, v in stacked.items()}, (xs[k],)) for k in range(3)])
    torch.testing.assert_close(batched, looped, rtol=1e-5, atol=1e-6)
    # Per-example gradients: vmap of grad with the parameters shared.
    per_example = vmap(grad(lambda p, x: functional_call(layer, p, (x[None],)).square().sum()), in_dims=(None, 0))(params, xs[0])
    for k in range(shape[0]):
        one = grad(lambda p: functional_call(layer, p, (xs[0, k : k + 1],)).square().sum())(params)
        for name in params:
            torch.testing.assert_close(per_example[name][k], one[name], rtol=1e-5, atol=1e-6)


def test_hessian_vector_products_agree_across_modes():
    # Forward over reverse (jvp of grad) against reverse over reverse (double backward) on the weights.
    cls, kwargs, shape = GEOMETRIES[0]
    layer, x, params = _layer_and_inputs(cls, kwargs, shape)
    tangent = {name: torch.randn_like(p) for name, p in params.items()}

    def loss(p):
        return functional_call(layer, p, (x.detach(),)).tanh().sum()

    _, forward_over_reverse = jvp(grad(loss), (params,), (tangent,))
    grads = torch.autograd.grad(loss(params), tuple(params.values()), create_graph=True)
    dot = sum((g * tangent[name]).sum() for g, name in zip(grads, params))
    reverse_over_reverse = torch.autograd.grad(dot, tuple(params.values()))
    for name, value in zip(params, reverse_over_reverse):
        torch.testing.assert_close(forward_over_reverse[name], value, rtol=1e-10, atol=1e-12)


def test_vmap_over_output_gradients_equals_a_loop():
    # Batched vector-Jacobian products of a graph built outside vmap reach the Functions' vmap rules,
    # to first order and, through a create_graph backward, to second order.
    cls, kwargs, shape = GEOMETRIES[1]
    layer, x, _ = _layer_and_inputs(cls, kwargs, shape, dtype=torch.float32)
    out = layer(x)
    u = torch.randn(out.shape, requires_grad=True)
    grad_x, _ = torch.autograd.grad(out, (x, layer.weight), u, create_graph=True)
    cases = [(out, (x, layer.weight, layer.bias), torch.randn(3, *out.shape)), (grad_x, (layer.weight, u), torch.randn(3, *x.shape))]
    for output, inputs, vectors in cases:
        batched = vmap(lambda v: torch.autograd.grad(output, inputs, v, retain_graph=True))(vectors)
        for k, v in enumerate(vectors):
            for got, expected in zip(batched, torch.autograd.grad(output, inputs, v, retain_graph=True)):
                torch.testing.assert_close(got[k], expected, rtol=1e-5, atol=1e-6)
