"""Stochastic Lanczos quadrature: exact quadrature moments, normalisation, closed-form Hessians."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from landscape import hessian_density, slq


def test_quadrature_moments_are_exact_for_diagonal_operators():
    # With Rademacher probes v^T D^p v / n = tr(D^p) / n exactly, and m Lanczos steps are exact up to p < 2m.
    eigenvalues = torch.linspace(-1.0, 4.0, 30, dtype=torch.float64)
    result = slq(torch.diag(eigenvalues), num_probes=2, max_iter=8)
    for p in range(1, 16):
        assert result.moment(p) == pytest.approx(float((eigenvalues**p).mean()), rel=1e-8)


def test_moments_of_a_random_matrix_are_unbiased():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(60, 60, generator=g, dtype=torch.float64)
    A = (a + a.T) / 2
    exact = np.linalg.eigvalsh(A.numpy())
    result = slq(A, num_probes=100, max_iter=20, seed=1)
    assert result.moment(2) == pytest.approx(float((exact**2).mean()), rel=0.05)
    assert result.nodes.shape == result.weights.shape == (100, 20)
    assert torch.allclose(result.weights.sum(dim=1), torch.ones(100, dtype=torch.float64))


def test_density_integrates_to_one_and_peaks_at_the_eigenvalues():
    A = torch.diag(torch.tensor([0.0] * 10 + [5.0] * 10, dtype=torch.float64))
    result = slq(A, max_iter=5, grid_points=2001)
    area = float(torch.trapezoid(result.density, result.grid))
    assert area == pytest.approx(1.0, abs=1e-3)
    peaks = result.grid[(result.density > 0.5 * result.density.max())]
    assert {round(float(x)) for x in peaks} == {0, 5}


def test_hessian_density_of_least_squares_has_the_closed_form_moments():
    # Orthogonal design: H = 2 X^T X / n is diagonal, so the moments are exact for any probe.
    X = torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64))
    model = nn.Linear(4, 1, bias=False).double()
    result = hessian_density(model, nn.MSELoss(), [(X, torch.zeros(4, 1, dtype=torch.float64))], max_iter=4, num_probes=3)
    eigenvalues = np.array([1.0, 4.0, 9.0, 16.0]) / 2
    for p in (1, 2, 3):
        assert result.moment(p) == pytest.approx(float((eigenvalues**p).mean()), rel=1e-10)


def test_bad_input_gives_a_clear_error():
    with pytest.raises(ValueError, match="max_iter must be a positive integer, got 0"):
        slq(torch.eye(3), max_iter=0)
    with pytest.raises(ValueError, match="sigma must be a positive number, got -1"):
        slq(torch.eye(3), sigma=-1)
    with pytest.raises(ValueError, match=r"max_basis_vectors must be an integer >= 0 \(0: no reorthogonalisation\) or None \(all\), got -1"):
        slq(torch.eye(3), max_basis_vectors=-1)
