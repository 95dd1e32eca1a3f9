"""Memory-bounded Lanczos: thick restarts against the unrestricted run, stored-vector bounds, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from embeddings import MemoryBudgetError, build_model
from landscape import HessianOperator, MatrixOperator, lanczos, slq
from landscape._basis import WORK_VECTORS


class CountingOperator(MatrixOperator):
    """A matrix that records how many vectors of its size exist after each product (the basis grows)."""

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__(matrix)
        self.products = 0

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        self.products += 1
        return super().matvec(v)


def random_symmetric(n: int, seed: int) -> torch.Tensor:
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (a + a.T) / 2


def small_cnn_operator() -> HessianOperator:
    torch.manual_seed(0)
    model = build_model("vanilla1d", channels=8).double().eval()
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(100, 1, 40, generator=g, dtype=torch.float64), torch.randint(0, 10, (100,), generator=g)) for _ in range(2)]
    return HessianOperator(model, nn.CrossEntropyLoss(), batches)


def test_restarted_top5_of_a_small_cnn_agrees_with_the_unrestricted_run_within_1_5x_its_products():
    operator = small_cnn_operator()
    full = lanczos(operator, k=5, tol=1e-3, max_basis_vectors=100)
    bounded = lanczos(operator, k=5, tol=1e-3, max_basis_vectors=12)
    assert full.restarts == 0 and full.converged
    assert bounded.restarts > 0 and bounded.converged and bounded.stored_vectors <= 12
    relative = ((bounded.eigenvalues - full.eigenvalues).abs() / full.eigenvalues.abs()).max()
    assert relative <= 1e-3
    assert bounded.iterations <= 1.5 * full.iterations


@pytest.mark.parametrize("which", ["largest", "smallest", "magnitude"])
def test_restarted_runs_match_numpy_with_the_basis_never_above_its_bound(which):
    A = random_symmetric(150, 7)
    exact = np.linalg.eigvalsh(A.numpy())
    expected = {"largest": exact[::-1], "smallest": exact, "magnitude": exact[np.argsort(-np.abs(exact))]}[which][:4]
    result = lanczos(A, k=4, tol=1e-10, which=which, max_basis_vectors=9, max_iter=2000, eigenvectors=True)
    assert result.converged and result.restarts > 0 and result.stored_vectors == 9
    assert np.allclose(result.eigenvalues.numpy(), expected, atol=1e-8)
    for value, vector, residual in zip(result.eigenvalues, result.eigenvectors, result.residuals):
        assert float((A @ vector - value * vector).norm()) == pytest.approx(float(residual), abs=1e-8)


def test_top1_keeps_no_basis_and_matches_the_full_run():
    A = random_symmetric(120, 8)
    plain = lanczos(A, k=1, tol=1e-10)
    full = lanczos(A, k=1, tol=1e-10, max_basis_vectors=120)
    assert plain.stored_vectors == 0 and full.stored_vectors == full.iterations
    assert float(plain.eigenvalues[0]) == pytest.approx(float(np.linalg.eigvalsh(A.numpy())[-1]), abs=1e-8)
    assert float(plain.eigenvalues[0]) == pytest.approx(float(full.eigenvalues[0]), abs=1e-8)


def test_basis_grows_as_needed_instead_of_max_iter_vectors():
    operator = CountingOperator(torch.diag(torch.linspace(0.0, 1.0, 400, dtype=torch.float64) ** 8))
    result = lanczos(operator, k=2, tol=1e-6, max_iter=400, max_basis_vectors=400)
    assert result.converged and result.stored_vectors == result.iterations == operator.products < 100


def test_basis_in_another_dtype_gives_the_same_eigenvalues_to_its_precision():
    A = random_symmetric(100, 9)
    narrow = lanczos(A, k=3, tol=1e-5, basis_dtype=torch.float32, basis_device="cpu")
    wide = lanczos(A, k=3, tol=1e-5)
    assert torch.allclose(narrow.eigenvalues, wide.eigenvalues, rtol=1e-4)


def test_a_run_that_cannot_fit_is_refused_before_any_product_naming_a_size_that_fits():
    operator = CountingOperator(random_symmetric(1000, 10))
    per = 1000 * 8
    budget = (WORK_VECTORS + 6) * per
    with pytest.raises(MemoryBudgetError, match=r"Lanczos would keep 20 vectors .* pass max_basis_vectors=6 \(CLI: --max-basis-vectors 6;"):
        lanczos(operator, k=3, max_bytes=budget)
    assert operator.products == 0
    assert lanczos(operator, k=3, max_bytes=budget, max_basis_vectors=6).stored_vectors <= 6
    with pytest.raises(MemoryBudgetError, match="pass max_basis_vectors=0"):
        slq(operator, max_basis_vectors=None, max_bytes=WORK_VECTORS * per)
    with pytest.raises(MemoryBudgetError, match="no basis fits"):
        lanczos(operator, k=1, max_bytes=WORK_VECTORS * per - 1)
    assert slq(operator, max_iter=30, max_bytes=WORK_VECTORS * per).nodes.shape == (1, 30)


def test_too_small_a_basis_for_k_is_refused():
    with pytest.raises(ValueError, match=r"max_basis_vectors=4 is below k \+ 2 = 5"):
        lanczos(random_symmetric(50, 0), k=3, max_basis_vectors=4)


def test_slq_without_stored_vectors_has_the_moments_of_full_reorthogonalisation():
    A = random_symmetric(200, 11)
    full = slq(A, num_probes=3, max_iter=40, max_basis_vectors=None, seed=2)
    plain = slq(A, num_probes=3, max_iter=40, seed=2)
    window = slq(A, num_probes=3, max_iter=40, max_basis_vectors=5, seed=2)
    for p in (1, 2, 4, 6):
        assert plain.moment(p) == pytest.approx(full.moment(p), rel=1e-6)
        assert window.moment(p) == pytest.approx(full.moment(p), rel=1e-6)
