"""Lanczos against numpy.linalg.eigh on random symmetric matrices, degenerate spectra and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from landscape import MatrixOperator, lanczos


def random_symmetric(n: int, seed: int) -> torch.Tensor:
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (a + a.T) / 2


@pytest.mark.parametrize("which", ["largest", "smallest", "magnitude"])
def test_extreme_eigenvalues_of_random_matrices_match_numpy(which):
    A = random_symmetric(120, 0)
    exact = np.linalg.eigvalsh(A.numpy())
    expected = {"largest": exact[::-1], "smallest": exact, "magnitude": exact[np.argsort(-np.abs(exact))]}[which][:4]
    result = lanczos(A, k=4, tol=1e-10, which=which)
    assert result.converged
    assert np.allclose(result.eigenvalues.numpy(), expected, rtol=1e-9)
    assert (result.error_bounds <= 1e-10 * result.eigenvalues.abs()).all()
    assert np.all(np.abs(result.eigenvalues.numpy() - expected) <= result.residuals.numpy() + 1e-12)


def test_eigenvectors_are_unit_ritz_vectors_with_the_reported_residuals():
    A = random_symmetric(80, 1)
    result = lanczos(A, k=3, tol=1e-8, eigenvectors=True)
    for value, vector, residual in zip(result.eigenvalues, result.eigenvectors, result.residuals):
        assert float(vector.norm()) == pytest.approx(1.0, abs=1e-12)
        assert float((A @ vector - value * vector).norm()) == pytest.approx(float(residual), abs=1e-9)


def test_repeated_eigenvalues_are_found_with_their_multiplicity():
    # Krylov spaces cannot see multiplicity; the restart on breakdown does.
    A = torch.diag(torch.tensor([5.0, 5.0, 5.0, 1.0, 0.5, 0.1], dtype=torch.float64))
    result = lanczos(A, k=4, tol=1e-10)
    assert result.eigenvalues.tolist() == pytest.approx([5.0, 5.0, 5.0, 1.0])


def test_unconverged_runs_say_so():
    result = lanczos(random_symmetric(200, 2), k=5, tol=1e-12, max_iter=8)
    assert not result.converged and result.iterations == 8


def test_operator_interface_and_seed_reproducibility():
    A = random_symmetric(50, 3)
    first = lanczos(MatrixOperator(A), k=2, tol=1e-3, seed=4)
    again = lanczos(A.numpy(), k=2, tol=1e-3, seed=4)
    assert torch.equal(first.eigenvalues, again.eigenvalues) and first.iterations == again.iterations


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 30), k=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_top_k_matches_eigvalsh_for_any_small_symmetric_matrix(n, k, seed):
    A = random_symmetric(n, seed)
    k = min(k, n)
    got = lanczos(A, k=k, tol=1e-10).eigenvalues.numpy()
    assert np.allclose(got, np.linalg.eigvalsh(A.numpy())[::-1][:k], atol=1e-8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "k must be a positive integer, got 0"),
        ({"k": 11}, "k=11 eigenvalues were asked of an operator of dimension 10; pass k <= 10"),
        ({"tol": 0}, "tol must be a positive number, got 0"),
        ({"which": "top"}, "which must be 'largest', 'smallest' or 'magnitude', got 'top'"),
        ({"k": 3, "max_iter": 2}, "max_iter=2 is below k=3"),
    ],
)
def test_bad_input_gives_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lanczos(torch.eye(10), **kwargs)


def test_not_an_operator_is_refused():
    with pytest.raises(ValueError, match="expected a landscape.LinearOperator .* got list"):
        lanczos([[1.0]], k=1)
