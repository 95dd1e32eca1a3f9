"""Memory estimates are exact and the budget refuses oversized models before allocating."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode  # what torch.utils.flop_counter counts with
from torch.utils._pytree import tree_leaves

from embeddings import MemoryBudgetError, build_model, estimate_memory, to_efcn, to_elcn


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


class _NewStorageBytes(TorchDispatchMode):
    """Bytes of every new (non-meta) tensor storage created by aten ops while active; views are not new."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        given = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs))
                 if isinstance(t, torch.Tensor) and t.device.type != "meta"}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta" and t.untyped_storage().data_ptr() not in given:
                self.bytes += t.untyped_storage().nbytes()
        return out


def _conv_out(n, kernel, stride=1, padding=0, dilation=1):
    """The textbook output length of a convolution or pooling window."""
    return (n + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def test_estimate_equals_a_hand_count_with_groups_dilation_and_padding():
    model = torch.nn.Sequential(
        torch.nn.Conv1d(4, 6, kernel_size=3, dilation=2, padding=1, groups=2), torch.nn.Flatten(), torch.nn.Linear(48, 3))
    out = _conv_out(10, 3, padding=1, dilation=2)
    assert out == 8
    linear = 48 * 3 + 3
    dense = (6 * out) * (4 * 10) + 6 * out  # the whole matrix, cross-group blocks included, on the unpadded input
    local = 6 * (4 // 2) * 3 * out + 6 * out  # one filter copy per output position, per group's input channels
    assert estimate_memory(model, (4, 10), "efcn") == 4 * (dense + linear)
    assert estimate_memory(model, (4, 10), "elcn") == 4 * (local + linear)


# AlexNet for 32x32 inputs, written out by hand: (C_in, C_out, kernel, stride, padding, max-pool after).
ALEXNET_CONVS = [(3, 64, 4, 2, 2, True), (64, 192, 5, 1, 2, True), (192, 384, 3, 1, 1, False),
                 (384, 256, 3, 1, 1, False), (256, 256, 3, 1, 1, True)]


def test_alexnet_estimate_equals_a_hand_count_and_a_real_build():
    # eFCN: each conv becomes a (C_out * out^2) x (C_in * side^2) matrix on the unpadded input, plus a
    # bias per output unit (the paper's 239M counted the zero-padded positions as inputs; we fold them away).
    side, efcn, elcn = 32, 0, 0
    for c_in, c_out, kernel, stride, padding, pool in ALEXNET_CONVS:
        out = _conv_out(side, kernel, stride, padding)
        efcn += (c_out * out**2) * (c_in * side**2) + c_out * out**2
        elcn += c_out * c_in * kernel**2 * out**2 + c_out * out**2
        side = _conv_out(out, 3, stride=2) if pool else out
    classifier = (256 * side**2 * 512 + 512) + (512 * 512 + 512) + (512 * 100 + 100)
    model = build_model("alexnet", num_classes=100)
    assert estimate_memory(model, target="efcn") == 4 * (efcn + classifier)
    assert estimate_memory(model, target="elcn") == 4 * (elcn + classifier)
    # The eLCN (160 MB) is small enough to build: the estimate is what building gives.
    assert estimate_memory(model, target="elcn") == _parameter_bytes(to_elcn(model))


def test_estimating_and_refusing_allocate_nothing():
    model = build_model("alexnet", num_classes=100)  # its eFCN would take 0.47 GiB
    with _NewStorageBytes() as allocated:
        estimate_memory(model, target="efcn")
        estimate_memory(model, target="elcn")
        with pytest.raises(MemoryBudgetError, match=r"needs 0\.473 GiB.*budget of 0\.0931 GiB \(max_bytes\).*elcn would need"):
            to_efcn(model, max_bytes=100_000_000)
    assert allocated.bytes < 2**20
    # The counter does see allocations: building a small eFCN registers its dense matrix.
    small = torch.nn.Sequential(torch.nn.Conv1d(1, 1, 3, bias=False))
    with _NewStorageBytes() as allocated:
        to_efcn(small, (1, 100))
    assert allocated.bytes >= 4 * 98 * 100


def test_estimate_refuses_an_unknown_target():
    with pytest.raises(ValueError, match="target must be one of 'efcn', 'elcn'"):
        estimate_memory(build_model("vanilla1d", channels=2), target="fcn")
