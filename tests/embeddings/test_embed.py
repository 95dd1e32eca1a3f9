"""Exactness of the embeddings over the space of conv configurations, and their algebra."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import jacrev

from embeddings import embed_parameters, model_space, to_cnn, to_efcn, to_elcn


@st.composite
def conv_configs(draw, dims: int):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    in_channels = groups * draw(st.integers(1, 2))
    out_channels = groups * draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(dims))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    padding_kind = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
    if padding_kind == "same":
        stride = (1,) * dims  # PyTorch refuses 'same' with strides
        padding = "same"
    elif padding_kind == "valid":
        padding = "valid"
    elif padding_kind == "int":
        padding = draw(st.integers(0, 3))
    else:
        padding = tuple(draw(st.integers(0, 3)) for _ in range(dims))
    min_size = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    size = tuple(draw(st.integers(m, m + 6)) for m in min_size)  # non-square in 2-D
    bias = draw(st.booleans())
    conv_cls = nn.Conv1d if dims == 1 else nn.Conv2d
    conv = conv_cls(in_channels, out_channels, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups,
                    bias=bias, dtype=torch.float64)
    return conv, (in_channels, *size)


def _random_like_init(model: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), dims=st.sampled_from([1, 2]))
def test_single_conv_is_exact_in_every_space(data, dims):
    conv, shape = data.draw(conv_configs(dims))
    x = torch.randn(3, *shape, dtype=torch.float64)
    expected = conv(x)
    efcn, elcn = to_efcn(conv, shape), to_elcn(conv, shape)
    torch.testing.assert_close(efcn(x), expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(elcn(x), expected, rtol=0, atol=1e-10)
    # The eFCN weight is exactly the Jacobian of the conv's linear part on the unpadded input.
    jacobian = jacrev(lambda v: nn.functional.conv1d(v, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
                      if dims == 1 else
                      nn.functional.conv2d(v, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups))(x[:1])
    torch.testing.assert_close(efcn.weight, jacobian.reshape(efcn.weight.shape), rtol=0, atol=0)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), dims=st.sampled_from([1, 2]))
def test_hierarchy_and_projection_algebra(data, dims):
    conv, shape = data.draw(conv_configs(dims))
    efcn = to_efcn(conv, shape)
    via_elcn = to_efcn(to_elcn(conv, shape), shape)
    for key, value in efcn.state_dict().items():
        assert torch.equal(value, via_elcn.state_dict()[key]), key
    # A filter entry whose every copy falls on padding acts on nothing and has no copy in the eFCN.
    weight = conv.weight.detach().clone().requires_grad_()
    dense = embed_parameters(efcn, {**dict(conv.named_parameters()), "weight": weight})["weight"]
    if dense.requires_grad:
        dense.sum().backward()
    identifiable = weight.grad > 0 if weight.grad is not None else torch.zeros_like(weight, dtype=torch.bool)
    x = torch.randn(2, *shape, dtype=torch.float64)
    for relaxed, seen in ((efcn, identifiable), (to_elcn(conv, shape), torch.ones_like(identifiable))):
        back = to_cnn(relaxed)
        assert isinstance(back, type(conv))
        torch.testing.assert_close(back.weight[seen], conv.weight[seen], rtol=0, atol=1e-12)
        torch.testing.assert_close(back(x), conv(x), rtol=0, atol=1e-10)
        if conv.bias is not None:
            torch.testing.assert_close(back.bias, conv.bias, rtol=0, atol=1e-12)


def test_embedding_of_a_trained_elcn_matches_its_function():
    conv = nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2, dtype=torch.float64)
    elcn = to_elcn(conv, (2, 7, 5))
    _random_like_init(elcn, seed=1)  # now weights differ per position: a genuine LCN
    x = torch.randn(4, 2, 7, 5, dtype=torch.float64)
    torch.testing.assert_close(to_efcn(elcn)(x), elcn(x), rtol=0, atol=1e-10)


class Nested(nn.Module):
    """Custom forward code, nesting, BatchNorm, pooling, dropout and a reshape by view."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding="same"), nn.BatchNorm2d(6), nn.ReLU())
        self.blocks = nn.ModuleList([nn.Sequential(nn.Conv2d(6, 6, (2, 3), stride=(1, 2), padding=(1, 0), groups=3),
                                                   nn.MaxPool2d(2)),
                                     nn.Sequential(nn.Dropout(0.3), nn.Conv2d(6, 4, 1, bias=False))])
        self.head = nn.Linear(4 * 5 * 2, 3)

    def forward(self, x):
        for block in self.blocks:
            x = torch.relu(block(self.stem(x) if block is self.blocks[0] else x))
        return self.head(x.view(x.size(0), -1))


def test_nested_model_with_batchnorm_pooling_and_dropout_is_exact_in_float32():
    torch.manual_seed(0)
    model = Nested()
    x = torch.randn(5, 3, 9, 10)
    model.train()
    model(x)  # non-trivial running statistics
    model.eval()
    for relaxed in (to_efcn(model, (3, 9, 10)), to_elcn(model, (3, 9, 10))):
        relaxed.eval()
        torch.testing.assert_close(relaxed(x), model(x), rtol=0, atol=1e-5)
        assert isinstance(relaxed.stem[1], nn.BatchNorm2d) and isinstance(relaxed.blocks[1][0], nn.Dropout)
    assert model_space(to_efcn(model, (3, 9, 10))) == "efcn"
    assert model_space(model) == "cnn"


def test_training_mode_and_requires_grad_are_kept():
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 6, 2))
    model[0].weight.requires_grad_(False)
    efcn = to_efcn(model, (1, 8))
    assert efcn.training and not efcn[0].weight.requires_grad and efcn[0].bias.requires_grad


def test_embed_parameters_is_the_differentiable_embedding():
    cnn = nn.Sequential(nn.Conv1d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv1d(2, 2, 3, stride=2), nn.Flatten())
    efcn = to_efcn(cnn, (1, 9))
    params = dict(cnn.named_parameters())
    embedded = embed_parameters(efcn, params)
    for key, value in efcn.state_dict().items():
        torch.testing.assert_close(embedded[key], value, rtol=0, atol=0)
    # Linear in the CNN parameters: a vector-Jacobian product is the transpose, i.e. a sum over copies.
    weight = params["0.weight"].detach().requires_grad_()
    dense = embed_parameters(efcn, {**params, "0.weight": weight})["0.weight"]
    dense.sum().backward()
    copies = torch.tensor([[[8.0, 9.0, 8.0]], [[8.0, 9.0, 8.0]]])  # taps falling on padding have fewer copies
    torch.testing.assert_close(weight.grad, copies)


def test_unsupported_layers_and_bad_shapes_give_clear_errors():
    with pytest.raises(TypeError, match="cannot embed ConvTranspose2d at '1'.*only Conv1d and Conv2d"):
        to_efcn(nn.Sequential(nn.Conv2d(1, 1, 3), nn.ConvTranspose2d(1, 1, 3)), (1, 8, 8))
    with pytest.raises(TypeError, match="padding_mode='circular'"):
        to_efcn(nn.Conv1d(1, 1, 3, padding=1, padding_mode="circular"), (1, 8))
    with pytest.raises(ValueError, match=r"cannot run on inputs of shape \(1, 1, 40\).*batch dimension excluded"):
        to_efcn(nn.Sequential(nn.Conv1d(1, 2, 3)), (1, 1, 40))
    with pytest.raises(ValueError, match=r"input_shape must be \(C, L\) for 1-D or \(C, H, W\)"):
        to_efcn(nn.Conv1d(1, 1, 3), (40,))
    with pytest.raises(ValueError, match="input_shape is required"):
        to_efcn(nn.Conv1d(1, 1, 3))
    with pytest.raises(ValueError, match="to_elcn cannot relax a model that already has dense"):
        to_elcn(to_efcn(nn.Conv1d(1, 1, 3), (1, 8)))
    efcn = to_efcn(nn.Conv1d(1, 1, 3), (1, 8))
    with pytest.raises(ValueError, match=r"built for inputs of shape \(N, 1, 8\) but received \(2, 1, 9\)"):
        efcn(torch.zeros(2, 1, 9))
