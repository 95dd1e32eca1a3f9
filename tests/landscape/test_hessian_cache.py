"""Cached gradient graphs: the same products as recomputation, within the memory budget, zero where linear."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import landscape._objective

from landscape import HessianOperator

from tests.landscape.test_hessian import brute_force_hessian, dense_operator, least_squares, tiny_cnn, tiny_data


def quadratic_model(seed: int = 0):
    """f(x) = x^T A x / 2 + b^T x with A symmetric: the Hessian in x is A, with no data at all."""
    g = torch.Generator().manual_seed(seed)
    root = torch.randn(4, 4, generator=g, dtype=torch.float64)
    A = root @ root.T
    b = torch.randn(4, generator=g, dtype=torch.float64)

    class Quadratic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.x = nn.Parameter(torch.randn(4, generator=g, dtype=torch.float64))

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            value = 0.5 * self.x @ A @ self.x + b @ self.x
            return value.expand(len(inputs))

    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return outputs.mean()

    data = [(torch.zeros(n, 1, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)) for n in (3, 5)]
    return Quadratic(), loss, data, A


def test_cached_and_recomputed_products_equal_the_closed_form_hessian_of_a_quadratic():
    model, loss, data, A = quadratic_model()
    cached = HessianOperator(model, loss, data)
    recomputed = HessianOperator(model, loss, data, cache_bytes=0)
    assert torch.allclose(dense_operator(cached), A, atol=1e-12)
    assert torch.allclose(dense_operator(recomputed), A, atol=1e-12)
    assert len(cached.objective.graphs()) == 1 and cached.objective.cached_batches == [0, 1]
    assert recomputed.objective.graphs() == [] and recomputed.objective.cached_batches == []


def test_cached_products_of_a_cnn_match_recomputation_and_the_brute_force_hessian():
    model, batches = tiny_cnn(3), tiny_data(3, sizes=(4, 6, 5))
    H = brute_force_hessian(model, batches)
    cached = HessianOperator(model, nn.CrossEntropyLoss(), batches)
    recomputed = HessianOperator(model, nn.CrossEntropyLoss(), batches, cache_bytes=0)
    v = torch.randn(cached.size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.allclose(cached.matvec(v), recomputed.matvec(v), rtol=1e-10, atol=1e-12)
    assert torch.allclose(dense_operator(cached), H, atol=1e-10)
    assert cached.objective.cached_bytes > 0 and recomputed.objective.cached_bytes == 0


def test_a_cached_graph_keeps_no_gradient_values_and_its_products_stay_exact():
    """The gradient's values are freed once its graph is built (a vector of the model's size fewer); the graph serves every product."""
    model, batches = tiny_cnn(3), tiny_data(3, sizes=(4, 6))
    H = brute_force_hessian(model, batches)
    cached = HessianOperator(model, nn.CrossEntropyLoss(), batches)
    v = torch.randn(cached.size, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for _ in range(2):
        assert torch.allclose(cached.matvec(v), H @ v, atol=1e-10)
    for graph in cached.objective.graphs():
        assert all(g.untyped_storage().nbytes() == 0 for g in graph.grads)
        assert all(leaf.grad is None for leaf in graph.leaves)  # the products were added into the result, not left behind


def test_batches_past_the_budget_are_recomputed_with_the_same_products():
    model, batches = tiny_cnn(4), tiny_data(4, sizes=(6, 6, 6))
    full = HessianOperator(model, nn.CrossEntropyLoss(), batches)
    full.objective.graphs()
    one = HessianOperator(model, nn.CrossEntropyLoss(), batches[:1])
    gradient = sum(p.numel() * 8 for p in model.parameters())
    activations = one.objective.graphs()[0].nbytes - gradient  # of one batch of 6
    assert full.objective.cached_batches == [0, 1, 2] and full.objective.cached_bytes < gradient + 3 * activations + 1
    partial = HessianOperator(model, nn.CrossEntropyLoss(), batches, cache_bytes=gradient + 2 * activations + activations // 2)
    assert len(partial.objective.graphs()) == 1 and partial.objective.cached_batches == [0, 1]
    rows = torch.randn(3, full.size, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected = torch.stack([full.matvec(r) for r in rows])
    assert torch.allclose(torch.stack([partial.matvec(r) for r in rows]), expected, atol=1e-12)
    assert torch.allclose(partial.matmat(rows, block=2), expected, atol=1e-12)
    only_first = HessianOperator(model, nn.CrossEntropyLoss(), batches, cache_bytes=gradient + activations + 1)
    assert only_first.objective.cached_batches == [0]
    assert torch.allclose(only_first.matmat(rows, block=3), expected, atol=1e-12)


def test_batches_grouped_into_several_graphs_give_the_same_products(monkeypatch):
    model, batches = tiny_cnn(6), tiny_data(6, sizes=(5, 5, 5, 5))
    one_graph = HessianOperator(model, nn.CrossEntropyLoss(), batches)
    one_graph.objective.graphs()  # built before the patch
    monkeypatch.setattr(landscape._objective, "_GROUP_BYTES", 1)  # smaller than one batch: a graph per batch
    per_batch = HessianOperator(model, nn.CrossEntropyLoss(), batches)
    assert len(one_graph.objective.graphs()) == 1 and len(per_batch.objective.graphs()) == 4
    assert per_batch.objective.cached_batches == [0, 1, 2, 3]
    v = torch.randn(per_batch.size, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.allclose(per_batch.matvec(v), one_graph.matvec(v), rtol=1e-10, atol=1e-12)


def test_graph_bytes_grow_with_the_batch():
    model = tiny_cnn(5)
    small, large = (HessianOperator(model, nn.CrossEntropyLoss(), tiny_data(5, sizes=(n,))) for n in (4, 40))
    assert 5 * small.objective.graphs()[0].nbytes < large.objective.graphs()[0].nbytes


def test_a_loss_linear_in_some_parameters_has_zero_hessian_rows_there():
    """L = mean((x.w)^2 + b): the gradient in b is the constant 1, with no graph behind it, so H = [[2 X^T X / n, 0], [0, 0]]."""
    X = torch.randn(10, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)

    class SquarePlusBias(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(3, dtype=torch.float64))
            self.b = nn.Parameter(torch.zeros(1, dtype=torch.float64))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x @ self.w) ** 2 + self.b

    expected = torch.zeros(4, 4, dtype=torch.float64)
    expected[:3, :3] = 2 * X.T @ X / len(X)
    for cache_bytes in (0, 2**20):
        op = HessianOperator(SquarePlusBias(), lambda out, t: out.mean(), [(X, torch.zeros(10))], cache_bytes=cache_bytes)
        assert torch.allclose(dense_operator(op), expected, atol=1e-12)
    model, X, y, _ = least_squares()
    assert torch.count_nonzero(dense_operator(HessianOperator(model, lambda out, t: out.mean(), [(X, y)]))) == 0


@pytest.mark.parametrize("cache_bytes", [-1, 1.5, True])
def test_bad_cache_budget_is_refused(cache_bytes):
    model, batches = tiny_cnn(), tiny_data()
    with pytest.raises(ValueError, match=r"cache_bytes must be a non-negative integer"):
        HessianOperator(model, nn.CrossEntropyLoss(), batches, cache_bytes=cache_bytes)
