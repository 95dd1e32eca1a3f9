"""The architecture registry rebuilds the paper's nets by name."""

from __future__ import annotations

import pytest
import torch

from embeddings import ARCHITECTURES, build_model, to_efcn


@pytest.mark.parametrize(
    "arch, kwargs, shape",
    [
        ("vanilla1d", {}, (1, 40)),
        ("vanilla2d", {}, (3, 32, 32)),
        ("vanilla2d", {"input_shape": (1, 8, 8), "pool": False, "num_classes": 10}, (1, 8, 8)),
        ("alexnet", {"num_classes": 100}, (3, 32, 32)),
        ("mlp", {"hidden": (16,)}, (1, 40)),
    ],
)
def test_models_build_by_name_and_remember_how(arch, kwargs, shape):
    model = build_model(arch, **kwargs)
    assert (model.arch, model.arch_kwargs, model.input_shape, model.space) == (arch, kwargs, shape, "cnn")
    classes = kwargs.get("num_classes", 10)
    assert model(torch.zeros(2, *shape)).shape == (2, classes)


def test_paper_sizes():
    # The reference figure: the 64-channel 1-D CNN has an eFCN of about 4.2M parameters. By hand: lengths
    # 40 -> 40 -> 20 -> 10 (kernels 5/3/3, strides 1/2/2, padding k // 2); each conv becomes a
    # (64 * L_out) x (C_in * L_in) matrix plus a bias per output unit; then a 640 -> 10 classifier.
    convs = [(1, 40, 40), (64, 40, 20), (64, 20, 10)]  # (C_in, L_in, L_out)
    expected = sum(64 * out * c_in * length + 64 * out for c_in, length, out in convs) + 640 * 10 + 10
    assert 4.2e6 < expected < 4.25e6
    assert sum(p.numel() for p in to_efcn(build_model("vanilla1d")).parameters()) == expected
    alexnet = build_model("alexnet", num_classes=100)
    assert [m.out_channels for m in alexnet.features if isinstance(m, torch.nn.Conv2d)] == [64, 192, 384, 256, 256]
    assert alexnet.classifier[1].in_features == 256


def test_registry_errors_are_clear():
    assert {"vanilla1d", "vanilla2d", "alexnet", "mlp"} <= set(ARCHITECTURES)
    with pytest.raises(ValueError, match="unknown architecture 'resnet'; expected one of: .*alexnet"):
        build_model("resnet")
    with pytest.raises(ValueError, match="architecture 'vanilla1d' does not accept arguments"):
        build_model("vanilla1d", width=3)
    with pytest.raises(ValueError, match=r"kernel_sizes needs 3 entries|strides needs 2 entries"):
        build_model("vanilla1d", kernel_sizes=(3, 3))
