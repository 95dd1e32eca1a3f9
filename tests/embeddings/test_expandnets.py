"""ExpandNets: compress(expand(m)) has m's architecture and computes the expanded net's function."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from embeddings import (
    ExpandedConv,
    ExpandedLinear,
    SmallNet,
    build_model,
    compose_conv,
    compose_linear,
    compress,
    compressed_parameters,
    expand,
    expanded_layers,
    product_l2,
)


def _net(dim: int, kernel: int, *, bias: bool, padding, stride: int = 1, padding_mode: str = "zeros") -> nn.Module:
    conv = nn.Conv1d if dim == 1 else nn.Conv2d
    norm = nn.BatchNorm1d if dim == 1 else nn.BatchNorm2d
    shape = (2, 13) if dim == 1 else (2, 11, 11)
    features = nn.Sequential(
        conv(2, 3, kernel, padding=padding, stride=stride, bias=bias, padding_mode=padding_mode),
        norm(3),
        nn.ReLU(),
        conv(3, 4, kernel, padding=padding, bias=bias),
    )
    with torch.no_grad():
        flat = features(torch.zeros(1, *shape)).numel()
    return nn.Sequential(features, nn.Flatten(), nn.Linear(flat, 5, bias=bias), nn.ReLU(), nn.Linear(5, 3, bias=bias))


def _perturb(model: nn.Module, seed: int) -> None:
    """Move every expanded weight (and BN statistic) as training would: the check must hold anywhere."""
    generator = torch.Generator().manual_seed(seed)

    def noise(tensor: torch.Tensor) -> torch.Tensor:
        return torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype)

    with torch.no_grad():
        for param in model.parameters():
            # Relative to each tensor's own scale (a zero bias gets 0.1), as training moves them.
            param.add_(0.5 * max(float(param.abs().mean()), 0.1) * noise(param))
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.mul_(torch.exp(0.3 * noise(buffer)))
            elif name.endswith("running_mean"):
                buffer.add_(0.3 * noise(buffer))


def _check_roundtrip(compact: nn.Module, mode: str, dtype: torch.dtype, atol: float) -> None:
    compact = compact.to(dtype).eval()
    expanded = expand(compact, mode, rate=2, generator=torch.Generator().manual_seed(1))
    _perturb(expanded, seed=2)
    compressed = compress(expanded).eval()
    assert [type(m) for m in compressed.modules()] == [type(m) for m in compact.modules()]
    compact.load_state_dict(compressed.state_dict())  # strict: same names and shapes
    shape = (2, 13) if isinstance(compact[0][0], nn.Conv1d) else (2, 11, 11)
    x = torch.randn(6, *shape, dtype=dtype, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(compact(x), expanded.eval()(x), atol=atol, rtol=0)


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("kernel", [3, 5, 7])
@pytest.mark.parametrize("mode", ["fc", "cl", "ck", "cl+fc", "ck+fc"])
@pytest.mark.parametrize("bias", [True, False])
def test_roundtrip_exact_float64(dim, kernel, mode, bias):
    if mode.startswith("ck") and kernel == 3:
        pytest.skip("CK needs k > 3 (tested below as an error)")
    _check_roundtrip(_net(dim, kernel, bias=bias, padding=kernel // 2), mode, torch.float64, atol=1e-10)


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("mode", ["cl+fc", "ck+fc"])
def test_roundtrip_exact_float32(dim, mode):
    _check_roundtrip(_net(dim, 5, bias=True, padding=2), mode, torch.float32, atol=1e-5)


@pytest.mark.parametrize(
    ("padding", "stride", "padding_mode"),
    [(0, 1, "zeros"), ("valid", 1, "zeros"), ("same", 1, "zeros"), (3, 1, "zeros"), (2, 2, "zeros"), (2, 1, "circular"), (2, 1, "reflect")],
)
@pytest.mark.parametrize("mode", ["cl", "ck"])
def test_roundtrip_padding_stride_and_padding_modes(padding, stride, padding_mode, mode):
    net = _net(2, 5, bias=True, padding=padding, stride=stride, padding_mode=padding_mode)
    _check_roundtrip(net, mode, torch.float64, atol=1e-10)


def test_chain_shapes_follow_the_paper():
    compact = _net(2, 7, bias=True, padding=3)
    cl = expand(compact, "cl", rate=4)
    assert [tuple(c.weight.shape) for c in cl[0][0].layers] == [(8, 2, 1, 1), (12, 8, 7, 7), (3, 12, 1, 1)]
    ck = expand(compact, "ck", rate=4)
    assert [tuple(c.weight.shape) for c in ck[0][0].layers] == [(8, 2, 3, 3), (12, 8, 3, 3), (3, 12, 3, 3)]
    assert [c.padding for c in ck[0][0].layers] == [(3, 3), (0, 0), (0, 0)]
    fc = expand(compact, "fc", rate=4)
    assert [tuple(c.weight.shape) for c in fc[2].layers] == [(4 * fc[2].in_features, fc[2].in_features), (20, 4 * fc[2].in_features), (5, 20)]
    assert type(fc[4]) is nn.Linear  # the classifier stays compact by default
    assert isinstance(expand(compact, "fc", expand_classifier=True)[4], ExpandedLinear)
    assert set(expanded_layers(expand(compact, "ck+fc"))) == {"0.0", "0.3", "2"}
    assert expand(compact, "ck+fc", rate=3).expansion == {"mode": "ck+fc", "rate": 3, "expand_classifier": False, "left_compact": []}


def test_expand_copies_and_is_reproducible_without_global_rng():
    compact = _net(1, 5, bias=True, padding=2)
    before = {k: v.clone() for k, v in compact.state_dict().items()}
    torch.manual_seed(123)
    a = expand(compact, "ck+fc")
    torch.manual_seed(456)
    b = expand(compact, "ck+fc")
    c = expand(compact, "ck+fc", generator=torch.Generator().manual_seed(7))
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name])
    assert not torch.equal(a[0][0].layers[0].weight, c[0][0].layers[0].weight)
    for name, value in compact.state_dict().items():
        assert torch.equal(value, before[name])
    assert not hasattr(compress(a), "expansion")


def test_smallnets_roundtrip_keep_registry_attributes():
    for arch, shape in [("smallnet1d", (1, 40)), ("smallnet2d", (3, 32, 32))]:
        compact = build_model(arch, kernel_size=7)
        expanded = expand(compact, "ck+fc")
        _perturb(expanded, seed=0)
        compressed = compress(expanded).eval()
        assert isinstance(compressed, SmallNet)
        assert (compressed.arch, compressed.arch_kwargs, compressed.input_shape) == (arch, {"kernel_size": 7}, shape)
        x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            torch.testing.assert_close(compressed(x), expanded.eval()(x), atol=1e-5, rtol=1e-5)


def test_exact_after_real_training_steps():
    """Train the expanded net (BatchNorm in training mode) for a few SGD steps, then compress."""
    compact = build_model("smallnet1d", kernel_size=5)
    expanded = expand(compact, "cl+fc", rate=2)
    optimizer = torch.optim.SGD(expanded.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        x, y = torch.randn(16, 1, 40, generator=generator), torch.randint(10, (16,), generator=generator)
        optimizer.zero_grad()
        nn.functional.cross_entropy(expanded.train()(x), y).backward()
        optimizer.step()
    x = torch.randn(8, 1, 40, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(compress(expanded).eval()(x), expanded.eval()(x), atol=1e-5, rtol=1e-5)


def test_compressed_parameters_are_differentiable_and_match_compress():
    expanded = expand(_net(2, 5, bias=True, padding=2), "ck+fc", rate=2)
    composed = compressed_parameters(expanded)
    assert list(composed) == [name for name, _ in compress(expanded).named_parameters()]
    for name, value in compress(expanded).named_parameters():
        torch.testing.assert_close(composed[name].detach(), value.detach())
    penalty = product_l2(expanded)
    torch.testing.assert_close(penalty.detach(), sum(p.detach().pow(2).sum() for p in compress(expanded).parameters()))
    penalty.backward()
    assert all(p.grad is not None for p in expanded.parameters())
    assert all(p.grad.abs().sum() > 0 for chain in expanded_layers(expanded).values() for p in chain.parameters())


def test_composition_gradients_float64():
    g = torch.Generator().manual_seed(0)
    convs = [torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True),
             torch.randn(2, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)]
    biases = [torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True),
              torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)]
    assert torch.autograd.gradcheck(lambda *t: compose_conv(t[:2], t[2:]), (*convs, *biases))
    mats = [torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True),
            torch.randn(2, 4, generator=g, dtype=torch.float64, requires_grad=True)]
    assert torch.autograd.gradcheck(lambda *t: compose_linear(t, [None, None])[0], tuple(mats))


def test_ck_on_a_3x3_kernel_is_refused():
    with pytest.raises(ValueError, match=r"mode 'ck' .* needs a square odd kernel with k > 3 .* kernel_size=\(3, 3\)\. Use mode 'cl'"):
        expand(_net(2, 3, bias=True, padding=1), "ck")


def test_ck_on_an_even_kernel_is_refused():
    with pytest.raises(ValueError, match=r"needs a square odd kernel with k > 3 \(5, 7, 9, \.\.\.\); layer '0\.0' has kernel_size=\(4,\)"):
        expand(_net(1, 4, bias=True, padding=2), "ck+fc")


def test_other_bad_inputs():
    net = _net(2, 5, bias=True, padding=2)
    with pytest.raises(ValueError, match=r"mode must be one of 'fc', 'cl', 'ck', 'cl\+fc', 'ck\+fc'; got 'kc'"):
        expand(net, "kc")
    with pytest.raises(ValueError, match=r"rate must be a positive int \(the paper uses 4\); got 0"):
        expand(net, "cl", rate=0)
    with pytest.raises(ValueError, match=r"compress: Sequential holds no expanded layers; expected the output of expand"):
        compress(net)
    with pytest.raises(ValueError, match=r"mode 'fc' found nothing to expand in Linear .* pass expand_classifier=True"):
        expand(nn.Linear(3, 2), "fc")
    with pytest.raises(ValueError, match=r"grouped convolutions are not supported \(groups=2\); expected groups=1"):
        expand(nn.Conv2d(2, 2, 3, groups=2), "cl")
    with pytest.raises(ValueError, match=r"padding='same' with an even kernel pads unevenly; give explicit int padding"):
        expand(nn.Conv1d(2, 2, 4, padding="same"), "cl")


def test_smallnet_validation():
    assert build_model("smallnet2d", kernel_size=7)(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert build_model("smallnet1d")(torch.zeros(2, 1, 40)).shape == (2, 10)
    with pytest.raises(ValueError, match=r"kernel_size must be odd .* got 4"):
        build_model("smallnet1d", kernel_size=4)
    with pytest.raises(ValueError, match=r"spatial sizes must be divisible by 8 .* got \(1, 42\)"):
        build_model("smallnet1d", input_shape=(1, 42))
