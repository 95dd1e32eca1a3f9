"""Memory estimates are exact and the budget refuses oversized models before allocating."""

from __future__ import annotations

import pytest
import torch

from embeddings import MemoryBudgetError, build_model, estimate_memory, to_efcn, to_elcn

torch.set_num_threads(1)


def _parameter_bytes(model):
    return sum(p.numel() * p.element_size() for p in model.parameters())


@pytest.mark.parametrize(
    "arch, kwargs",
    [
        ("vanilla1d", dict(channels=8)),
        ("vanilla2d", dict(channels=8, input_shape=(3, 32, 40))),
        ("vanilla2d", dict(channels=4, input_shape=(1, 8, 8), pool=False, bias=False)),
    ],
)
def test_estimate_equals_built_parameter_bytes(arch, kwargs):
    model = build_model(arch, **kwargs)
    assert estimate_memory(model, target="efcn") == _parameter_bytes(to_efcn(model))
    assert estimate_memory(model, target="elcn") == _parameter_bytes(to_elcn(model))
    assert estimate_memory(to_elcn(model), target="efcn") == _parameter_bytes(to_efcn(to_elcn(model)))


def test_alexnet_estimate_needs_no_allocation():
    # The paper's AlexNet on 32x32: 126.8M eFCN parameters once padding is folded away
    # (the paper's 239M counted the zero-padded positions as inputs).
    model = build_model("alexnet", num_classes=100)
    bytes_ = estimate_memory(model)
    assert bytes_ == 4 * 126_878_756
    with pytest.raises(MemoryBudgetError, match=r"needs 0\.473 GiB.*budget of 0\.0931 GiB \(max_bytes\).*elcn would need"):
        to_efcn(model, max_bytes=100_000_000)


def test_estimate_refuses_an_unknown_target():
    with pytest.raises(ValueError, match="target must be one of 'efcn', 'elcn'"):
        estimate_memory(build_model("vanilla1d", channels=2), target="fcn")
