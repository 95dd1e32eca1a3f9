"""Permutation alignment (landscape.align): groups from the traced graph, exact function, recovery, lower barriers."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

import embeddings
from landscape import align, interpolate
from landscape._permutation_groups import permutation_spec, permute_state


def _random_running_stats(model: nn.Module, generator: torch.Generator) -> nn.Module:
    # Fresh BatchNorm statistics are 0 and 1 for every unit, so permuting them would go unnoticed.
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator, dtype=torch.float64))
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator, dtype=torch.float64) + 0.5)
    return model


MODELS = {
    "mlp": (lambda: embeddings.build_model("mlp", hidden=(16, 12)), (1, 40)),
    "vanilla1d": (lambda: embeddings.build_model("vanilla1d", channels=6), (1, 40)),
    "vanilla2d": (lambda: embeddings.build_model("vanilla2d", channels=5, input_shape=(3, 32, 32)), (3, 32, 32)),
    "efcn": (lambda: embeddings.to_efcn(embeddings.build_model("vanilla1d", channels=4, input_shape=(1, 12)), (1, 12)), (1, 12)),
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=10), (3, 16, 16)),
}


def _pair(name: str) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    make, shape = MODELS[name]
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model_a = _random_running_stats(make().double().eval(), generator)
    model_b = _random_running_stats(make().double().eval(), generator)
    return model_a, model_b, torch.randn(5, *shape, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("name", list(MODELS))
def test_aligned_model_computes_the_same_function(name):
    model_a, model_b, x = _pair(name)
    # One pass over ResNet-18's groups (~2 s in float64 on one thread) permutes all of them already.
    result = align(model_a, model_b, max_iter=1 if name == "resnet18" else 100)
    assert torch.allclose(result.model(x), model_b(x), rtol=0, atol=1e-10)
    moved = [key for key, value in model_b.state_dict().items() if not torch.equal(value, result.model.state_dict()[key])]
    assert moved, "alignment of two random networks permuted nothing"
    for group, perm in result.permutations.items():
        assert torch.equal(torch.sort(perm).values, torch.arange(len(perm))), group
    assert result.similarity_after > result.similarity_before
    assert model_b.state_dict().keys() == result.model.state_dict().keys()


def test_resnet_groups_follow_the_residual_stream():
    spec = permutation_spec(torchvision.models.resnet18(num_classes=10))
    # Stem + 4 stages (one residual stream each, the stage's first conv2 and its downsample tied) + 8 inner convs.
    assert len(spec.sizes) == 12
    stream = {axis.key for axis in spec.axes["conv1"]}
    assert {"layer1.0.conv2.weight", "layer1.1.conv2.weight", "layer1.1.bn2.running_var", "layer2.0.downsample.0.weight"} <= stream
    stage2 = {axis.key for axis in spec.axes["layer2.0.conv2"]}
    assert {"layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_mean", "layer2.1.conv2.weight", "fc.weight"} - stage2 == {"fc.weight"}
    assert all(axis.key != "fc.bias" for axes in spec.axes.values() for axis in axes)  # the output never moves


def test_flatten_maps_channels_onto_blocks_of_features():
    model = embeddings.build_model("vanilla1d", channels=3, input_shape=(1, 8), strides=1)
    spec = permutation_spec(model)
    last = list(spec.sizes)[-1]
    classifier = next(axis for axis in spec.axes[last] if axis.key == "classifier.weight")
    assert classifier.view == (10, 3, 8) and classifier.axis == 1


@pytest.mark.parametrize("name", ["mlp", "vanilla1d", "efcn"])
@pytest.mark.parametrize("method", ["weights", "activations"])
def test_a_permuted_copy_is_aligned_back(name, method):
    model_a, _, x = _pair(name)
    if method == "activations":
        # Small random nets have dead ReLU channels, whose order no activation can tell: keep every unit alive.
        with torch.no_grad():
            for module in model_a.modules():
                if isinstance(module, (nn.Linear, embeddings.EmbeddedDense, nn.Conv1d)) and module.bias is not None:
                    module.bias.add_(0.5)
    spec = permutation_spec(model_a)
    generator = torch.Generator().manual_seed(1)
    shuffles = {group: torch.randperm(size, generator=generator) for group, size in spec.sizes.items()}
    shuffled = copy.deepcopy(model_a)
    shuffled.load_state_dict(permute_state(model_a.state_dict(), spec, shuffles))
    assert torch.allclose(shuffled(x), model_a(x), rtol=0, atol=1e-10)
    # Enough inputs that no two post-ReLU units agree on every one of them (ties would make the match ambiguous).
    inputs = torch.randn(256, *x.shape[1:], generator=generator, dtype=torch.float64)
    result = align(model_a, shuffled, method=method, batches=[(inputs, torch.zeros(len(inputs), dtype=torch.long))])
    assert result.similarity_before < 0.99
    assert result.similarity_after == pytest.approx(1.0, abs=1e-12)
    for key, value in model_a.state_dict().items():
        assert torch.equal(result.model.state_dict()[key], value), key
    batches = [(x, torch.arange(len(x)) % 10)]
    path = interpolate(model_a, result.model, None, batches, alphas=[0.0, 0.25, 0.5, 0.75, 1.0])
    assert path.metrics.barrier == pytest.approx(0.0, abs=1e-10)


def test_a_cnn_is_aligned_with_the_efcn_of_its_permuted_copy():
    cnn = embeddings.build_model("vanilla1d", channels=4, input_shape=(1, 12)).double()
    spec = permutation_spec(cnn)
    generator = torch.Generator().manual_seed(2)
    shuffled = copy.deepcopy(cnn)
    shuffled.load_state_dict(permute_state(cnn.state_dict(), spec, {g: torch.randperm(n, generator=generator) for g, n in spec.sizes.items()}))
    efcn = embeddings.to_efcn(shuffled)
    result = align(cnn, efcn)
    assert embeddings.model_space(result.model) == "efcn"
    assert result.similarity_after == pytest.approx(1.0, abs=1e-12)
    expected = embeddings.to_efcn(cnn).state_dict()
    for key, value in result.model.state_dict().items():
        assert torch.allclose(value, expected[key], rtol=0, atol=1e-12), key


def test_groups_read_by_an_unknown_op_are_left_unpermuted():
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first, self.second = nn.Linear(4, 6), nn.Linear(6, 3)
            self.scale = nn.Parameter(torch.arange(6.0))

        def forward(self, x):
            return self.second(torch.relu(self.first(x)) * self.scale)  # a tensor product the tracer does not know

    assert permutation_spec(Scaled()).sizes == {}


def test_a_linear_over_positions_leaves_the_channels_unpermuted():
    positions = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.ReLU(), nn.Linear(8, 8), nn.Flatten(), nn.Linear(32, 10))
    assert permutation_spec(positions).sizes == {}  # the Linear mixes positions, not channels; its units stay 3-D
    grouped = nn.Sequential(nn.Conv1d(1, 4, 3), nn.ReLU(), nn.Conv1d(4, 4, 3, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(24, 2))
    assert permutation_spec(grouped).sizes == {}  # a grouped conv ties its channels in blocks
    features = nn.Sequential(nn.Linear(8, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    spec = permutation_spec(features)
    assert spec.sizes == {"0": 6}
    assert {axis.key for axis in spec.axes["0"]} == {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "3.weight"}


def test_bad_arguments_are_one_line():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    with pytest.raises(ValueError, match="method must be 'weights' or 'activations', got 'bogus'"):
        align(a, b, method="bogus")
    with pytest.raises(ValueError, match="needs batches="):
        align(a, b, method="activations")

    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(2, 2)

        def forward(self, x):
            return self.layer(x) if x.sum() > 0 else x

    with pytest.raises(ValueError, match="torch.fx could not trace it") as err:
        align(Branchy(), Branchy())
    assert "\n" not in str(err.value)
