"""Hutchinson and Hutch++: exact cases, unbiasedness within standard errors, closed-form Hessians."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import landscape.trace
from landscape import HessianOperator, MatrixOperator, hessian_trace, hutch_plus_plus, hutchinson


def low_rank_plus_noise(n: int = 200, rank: int = 5, seed: int = 0) -> torch.Tensor:
    """A spectrum like a network Hessian's: a few large outliers over a small bulk."""
    g = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(n, rank, generator=g, dtype=torch.float64)).Q
    noise = torch.randn(n, n, generator=g, dtype=torch.float64) / n
    return u @ torch.diag(torch.linspace(50.0, 10.0, rank, dtype=torch.float64)) @ u.T + (noise + noise.T) / 2


def test_hutchinson_is_exact_on_diagonal_matrices():
    result = hutchinson(torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64)), num_matvecs=3)
    assert result.estimate == 15.0 and result.stderr == 0.0 and result.num_matvecs == 3


def test_hutchinson_is_unbiased_within_its_standard_error():
    A = low_rank_plus_noise()
    result = hutchinson(A, num_matvecs=200, seed=1)
    assert abs(result.estimate - float(A.trace())) < 4 * result.stderr
    assert result.samples.shape == (200,) and result.method == "hutchinson"


def test_hutch_plus_plus_is_exact_with_a_full_sketch_and_beats_hutchinson_on_low_rank_spectra():
    A = low_rank_plus_noise()
    assert hutch_plus_plus(A[:20, :20], num_matvecs=60).estimate == pytest.approx(float(A[:20, :20].trace()), rel=1e-12)
    exact = float(A.trace())
    errors_pp = [abs(hutch_plus_plus(A, num_matvecs=30, seed=s).estimate - exact) for s in range(5)]
    errors_h = [abs(hutchinson(A, num_matvecs=30, seed=s).estimate - exact) for s in range(5)]
    assert sum(errors_pp) < sum(errors_h) / 5


def test_hessian_trace_of_least_squares_is_the_closed_form():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(30, 4, generator=g, dtype=torch.float64), torch.randn(30, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(4, 1).double()
    exact = 2 * (float(X.square().sum()) + 30) / 30  # tr(2 [X 1]^T [X 1] / n)
    batches = [(X[:10], y[:10]), (X[10:], y[10:])]
    assert hessian_trace(model, nn.MSELoss(), batches, method="hutch++", num_matvecs=15) == pytest.approx(exact, rel=1e-12)
    estimate = hutchinson(HessianOperator(model, nn.MSELoss(), batches), num_matvecs=400)
    assert abs(estimate.estimate - exact) < 4 * estimate.stderr


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: hutchinson(torch.eye(3), num_matvecs=0), "num_matvecs must be a positive integer, got 0"),
        (lambda: hutch_plus_plus(torch.eye(3), num_matvecs=2), "Hutch\\+\\+ needs num_matvecs >= 3"),
        (
            lambda: hessian_trace(nn.Linear(2, 1), nn.MSELoss(), [(torch.zeros(1, 2), torch.zeros(1, 1))], method="exact"),
            "method must be 'hutchinson' or 'hutch\\+\\+', got 'exact'",
        ),
    ],
)
def test_bad_input_gives_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_hutchinson_in_blocks_of_one_draws_the_same_probes_as_in_one_block(monkeypatch):
    """Large operators get probes one block at a time (bounded memory); the estimate must not change."""
    A = torch.randn(30, 30, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    A = A + A.T
    whole = hutchinson(A, num_matvecs=10, seed=5)
    monkeypatch.setattr(landscape.trace, "_BLOCK_BYTES", 1)
    assert landscape.trace._block_sizes(10, MatrixOperator(A)) == [1] * 10
    assert torch.allclose(hutchinson(A, num_matvecs=10, seed=5).samples, whole.samples, rtol=1e-12, atol=1e-12)
