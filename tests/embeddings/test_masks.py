"""Local / off-local masks, delta and masked evaluation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from embeddings import build_model, fcn_of_same_size, local_masks, mask_blocks, offlocal_ratio, to_efcn, to_elcn


def test_poster_example_mask_has_the_figure_1_structure():
    # 4x4 input, 3x3 filter, no padding: a (4, 16) matrix with 9 local entries per row.
    efcn = to_efcn(nn.Conv2d(1, 1, 3), (1, 4, 4))
    mask = local_masks(efcn)["weight"]
    assert mask.shape == (4, 16) and mask.sum(1).tolist() == [9, 9, 9, 9]
    assert mask[0].view(4, 4)[:3, :3].all() and not mask[0].view(4, 4)[3].any()


def test_delta_is_zero_after_embedding_and_grows_off_local_only():
    model = build_model("vanilla1d", channels=4)
    efcn = to_efcn(model)
    assert offlocal_ratio(model) == 0.0 and offlocal_ratio(efcn) == 0.0 and offlocal_ratio(to_elcn(model)) == 0.0
    masks = local_masks(efcn)
    with torch.no_grad():
        for name, p in efcn.named_parameters():
            if name in masks:
                p.add_(0.01 * (~masks[name]))
    delta = offlocal_ratio(efcn)
    off = sum(((0.01 * (~m)) ** 2).sum() for m in masks.values())
    total = sum((p.double() ** 2).sum() for p in efcn.parameters())
    assert delta == pytest.approx(float((off / total).sqrt()), rel=1e-6)
    assert 0 < delta < 1


def test_random_fcn_is_mostly_off_local():
    model = build_model("vanilla1d", channels=8)
    assert offlocal_ratio(fcn_of_same_size(model, generator=torch.Generator().manual_seed(0))) > 0.8


def test_masked_models_split_a_linear_efcn_exactly():
    conv = nn.Conv1d(2, 3, 3, padding=1, bias=False, dtype=torch.float64)
    efcn = to_efcn(conv, (2, 10))
    with torch.no_grad():
        efcn.weight.add_(torch.randn_like(efcn.weight))
    x = torch.randn(4, 2, 10, dtype=torch.float64)
    local, offlocal = mask_blocks(efcn, "local"), mask_blocks(efcn, "offlocal")
    torch.testing.assert_close(local(x) + offlocal(x), efcn(x))
    assert offlocal_ratio(local) == 0.0 and offlocal_ratio(offlocal) == pytest.approx(1.0)
    assert not torch.equal(efcn.weight, local.weight)  # the original is untouched


def test_mask_blocks_refuses_bad_input():
    with pytest.raises(ValueError, match="keep must be one of 'local', 'offlocal'; got 'both'"):
        mask_blocks(to_efcn(nn.Conv1d(1, 1, 3), (1, 5)), "both")
    with pytest.raises(ValueError, match="mask_blocks needs an eFCN"):
        mask_blocks(nn.Conv1d(1, 1, 3), "local")
