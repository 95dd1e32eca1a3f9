"""Locally-connected layers against a brute-force per-position reference."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

import embeddings.layers
from embeddings import EmbeddedDense, LocallyConnected1d, LocallyConnected2d, to_efcn


def _brute_force(layer, x):
    """Each output position applied as its own conv to the padded input: no unfold, no einsum."""
    g = layer.geometry
    pads = [p for before, after in zip(reversed(g.pad_before), reversed(g.pad_after)) for p in (before, after)]
    padded = F.pad(x, pads)
    conv = F.conv1d if g.dims == 1 else F.conv2d
    out = torch.zeros(x.shape[0], *g.out_shape, dtype=x.dtype)
    for position in itertools.product(*(range(n) for n in g.out_size)):
        filters = layer.weight[position].permute(-1, -2, *range(g.dims))  # (*k, C_in/G, C_out) -> conv layout
        full = conv(padded, filters, None, g.stride, 0, g.dilation, g.groups)
        out[(slice(None), slice(None), *position)] = full[(slice(None), slice(None), *position)]
    return out if layer.bias is None else out + layer.bias


@pytest.mark.parametrize(
    "cls, kwargs, shape",
    [
        (LocallyConnected1d, dict(kernel_size=3, stride=2, padding=1), (2, 9)),
        (LocallyConnected1d, dict(kernel_size=2, dilation=2, padding="same", groups=2, bias=False), (2, 7)),
        (LocallyConnected2d, dict(kernel_size=(2, 3), stride=(2, 1), padding=(1, 0)), (2, 6, 5)),
        (LocallyConnected2d, dict(kernel_size=3, dilation=(1, 2), padding="valid", groups=2), (4, 7, 8)),
    ],
)
@pytest.mark.parametrize("chunk_bytes", [None, 1])  # 1: every output row gathered and multiplied on its own
def test_locally_connected_matches_brute_force_and_its_efcn(cls, kwargs, shape, chunk_bytes, monkeypatch):
    if chunk_bytes is not None:
        monkeypatch.setattr(embeddings.layers, "_PATCH_CHUNK_BYTES", chunk_bytes)
    generator = torch.Generator().manual_seed(0)
    layer = cls(shape[0], 4, in_size=shape[1:], dtype=torch.float64, **kwargs)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype))
    x = torch.randn(3, *shape, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(layer(x), _brute_force(layer, x), rtol=0, atol=1e-10)
    torch.testing.assert_close(to_efcn(layer, shape)(x), layer(x), rtol=0, atol=1e-10)
    assert layer(x).is_contiguous()


def test_gradients_reach_every_position_independently():
    layer = LocallyConnected1d(1, 1, kernel_size=3, in_size=5, padding=1, bias=False)
    x = torch.zeros(1, 1, 5)
    x[0, 0, 2] = 1.0
    layer(x)[0, 0, 0].backward()
    # Only output position 0's filter receives gradient, and only on the tap that sees x[2]: none does.
    assert layer.weight.grad.abs().sum() == 0
    layer.zero_grad()
    layer(x)[0, 0, 1].backward()
    expected = torch.zeros_like(layer.weight)
    expected[1, 2, 0, 0] = 1.0  # position 1, tap 2
    torch.testing.assert_close(layer.weight.grad, expected)


def test_bad_in_size_is_refused():
    with pytest.raises(ValueError, match="needs an in_size of 2 spatial entries"):
        LocallyConnected2d(1, 1, 3, in_size=(5,))
    with pytest.raises(ValueError, match="does not fit an input of size"):
        LocallyConnected1d(1, 1, 7, in_size=4)


def test_from_weight_adopts_the_given_tensors_and_computes_with_them():
    # A 1x1 conv on 2 positions: the dense matrix is the identity, so the layer must return x + bias.
    geometry = LocallyConnected1d(1, 1, kernel_size=1, in_size=2).geometry
    weight, bias = torch.nn.Parameter(torch.eye(2, dtype=torch.float64)), torch.tensor([10.0, 20.0], dtype=torch.float64)
    dense = EmbeddedDense.from_weight(geometry, weight, bias)
    assert dense.weight is weight and dense.bias.data_ptr() == bias.data_ptr()
    torch.testing.assert_close(dense(torch.tensor([[[1.0, 2.0]]], dtype=torch.float64)),
                               torch.tensor([[[11.0, 22.0]]], dtype=torch.float64))
    local = LocallyConnected1d.from_weight(geometry, torch.full((2, 1, 1, 1), 3.0))
    assert local.bias is None
    torch.testing.assert_close(local(torch.tensor([[[1.0, 2.0]]])), torch.tensor([[[3.0, 6.0]]]))


def test_from_weight_refuses_tensors_of_another_geometry():
    geometry = LocallyConnected1d(1, 1, kernel_size=1, in_size=2).geometry
    with pytest.raises(ValueError, match=r"expects weight \(2, 2\) and bias \(2,\) for this geometry, got \(2, 3\)"):
        EmbeddedDense.from_weight(geometry, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="needs a 2-d geometry, got a 1-d one"):
        LocallyConnected2d.from_weight(geometry, torch.zeros(1, 1, 1, 2))


def test_state_dicts_of_the_earlier_weight_layout_load_into_todays():
    # Before positions came first the weight was (C_out, C_in, kh, kw, oh, ow): the same numbers, permuted.
    generator = torch.Generator().manual_seed(0)
    layer = LocallyConnected2d(3, 4, kernel_size=(2, 3), in_size=(5, 6), padding=1, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator, dtype=torch.float64))
    legacy = {"weight": layer.weight.detach().permute(5, 4, 2, 3, 0, 1).clone(), "bias": layer.bias.detach().clone()}
    assert legacy["weight"].shape == (4, 3, 2, 3, 6, 6)
    fresh = LocallyConnected2d(3, 4, kernel_size=(2, 3), in_size=(5, 6), padding=1, dtype=torch.float64)
    fresh.load_state_dict(legacy)
    x = torch.randn(2, 3, 5, 6, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(fresh(x), layer(x), rtol=0, atol=0)


def test_gradients_do_not_depend_on_how_the_patches_are_chunked(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    layer = LocallyConnected2d(4, 6, kernel_size=3, in_size=(7, 6), stride=(2, 1), padding=1, groups=2, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator, dtype=torch.float64))
    x = torch.randn(3, 4, 7, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.randn(3, 6, 4, 6, generator=generator, dtype=torch.float64)

    def gradients():
        layer.zero_grad()
        x.grad = None
        (layer(x) * target).sum().backward()
        return x.grad.clone(), layer.weight.grad.clone(), layer.bias.grad.clone()

    whole = gradients()
    monkeypatch.setattr(embeddings.layers, "_PATCH_CHUNK_BYTES", 1)
    for chunked, reference in zip(gradients(), whole):
        torch.testing.assert_close(chunked, reference, rtol=0, atol=1e-12)
