"""The Hessian of a CNN is the Hessian of its eFCN restricted to the CNN subspace (chain rule, Phi linear)."""

from __future__ import annotations

import torch
from torch import nn

from embeddings import embed_parameters, local_masks, to_cnn, to_efcn
from landscape import HessianOperator, lanczos, parameter_subspace


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv1d(3, 2, 3, stride=2), nn.Tanh(), nn.Flatten(), nn.Linear(12, 4)
    ).double()


def data():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(n, 1, 14, generator=g, dtype=torch.float64), torch.randint(0, 4, (n,), generator=g)) for n in (9, 6)]


def cnn_subspace(efcn: nn.Module, cnn: nn.Module):
    coordinates = {name: p.detach() for name, p in cnn.named_parameters()}
    return parameter_subspace(efcn, linear_map=lambda c: embed_parameters(efcn, c), coordinates=coordinates)


def test_cnn_hessian_equals_efcn_hessian_on_the_cnn_subspace():
    cnn, batches = small_cnn(), data()
    efcn = to_efcn(cnn, (1, 14))
    ours = HessianOperator(cnn, nn.CrossEntropyLoss(), batches)
    restricted = HessianOperator(efcn, nn.CrossEntropyLoss(), batches, subspace=cnn_subspace(efcn, cnn))
    assert restricted.size == ours.size
    g = torch.Generator().manual_seed(2)
    for _ in range(3):
        v = torch.randn(ours.size, generator=g, dtype=torch.float64)
        assert torch.allclose(restricted.matvec(v), ours.matvec(v), atol=1e-10)
    top_cnn = lanczos(ours, k=2, tol=1e-10).eigenvalues
    top_restricted = lanczos(restricted, k=2, tol=1e-10).eigenvalues
    assert torch.allclose(top_cnn, top_restricted, rtol=1e-8)


def test_cnn_subspace_is_a_projection_of_the_efcn_point():
    # Off the CNN subspace, the map still gives J^T H J at the eFCN's own point, with to_cnn as coordinates.
    cnn, batches = small_cnn(), data()
    efcn = to_efcn(cnn, (1, 14))
    with torch.no_grad():
        efcn[0].weight.add_(0.01 * torch.randn_like(efcn[0].weight))
    sub = parameter_subspace(efcn, linear_map=lambda c: embed_parameters(efcn, c), coordinates=dict(to_cnn(efcn).named_parameters()))
    op = HessianOperator(efcn, nn.CrossEntropyLoss(), batches, subspace=sub)
    full = HessianOperator(efcn, nn.CrossEntropyLoss(), batches)
    v = torch.randn(op.size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert set(sub.moving) == set(full.subspace.moving)  # every eFCN parameter is an image of the CNN's
    lifted = full.subspace.flatten(sub.lift(v))
    assert torch.allclose(op.matvec(v), sub.restrict(full.subspace.unflatten(full.matvec(lifted))), atol=1e-10)


def test_local_and_offlocal_blocks_split_the_embedded_weights():
    efcn = to_efcn(small_cnn(), (1, 14))
    masks = local_masks(efcn)
    local = parameter_subspace(efcn, masks=masks)
    offlocal = parameter_subspace(efcn, masks={name: ~mask for name, mask in masks.items()})
    assert local.size + offlocal.size == sum(mask.numel() for mask in masks.values())
    op = HessianOperator(efcn, nn.CrossEntropyLoss(), data(), subspace=offlocal)
    assert lanczos(op, k=1, tol=1e-6).converged
