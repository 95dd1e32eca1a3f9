"""interpolate(..., input_shape=...) embeds a CNN that carries no recorded input shape; one line without it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from embeddings import to_efcn
from landscape import interpolate

SHAPE = (1, 6, 6)


def _plain_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 36, 3)).double()


def _batches():
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(10, *SHAPE, generator=generator, dtype=torch.float64), torch.randint(0, 3, (10,), generator=generator))]


def test_input_shape_keyword_embeds_a_plain_cnn():
    cnn = _plain_cnn()
    efcn = to_efcn(cnn, SHAPE)
    assert not hasattr(cnn, "input_shape")
    result = interpolate(cnn, efcn, None, _batches(), alphas=[0.0, 0.5, 1.0], input_shape=SHAPE)
    # the eFCN is the CNN embedded exactly, so the straight line between them is one function
    assert result.train_loss.max() - result.train_loss.min() < 1e-10
    assert result.spaces["common"] == "efcn"


def test_recorded_input_shape_is_the_fallback():
    cnn = _plain_cnn()
    efcn = to_efcn(cnn, SHAPE)
    cnn.input_shape = SHAPE
    assert interpolate(cnn, efcn, None, _batches(), alphas=[0.0, 1.0]).spaces["a"] == "cnn"


def test_no_input_shape_is_one_line():
    cnn = _plain_cnn()
    with pytest.raises(ValueError, match=r"embedding model A \(Sequential cnn\) into the efcn space needs its input shape; "
                                         r"pass input_shape=") as info:
        interpolate(cnn, to_efcn(cnn, SHAPE), None, _batches(), alphas=[0.0, 1.0])
    assert "\n" not in str(info.value)
