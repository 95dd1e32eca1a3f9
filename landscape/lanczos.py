"""Extreme eigenvalues of a symmetric operator by Lanczos with full reorthogonalisation.

Lanczos (1950) builds an orthonormal basis :math:`Q_m` of the Krylov space
:math:`\\mathcal{K}_m(A, q_1)` in which :math:`Q_m^\\top A Q_m = T_m` is tridiagonal; the eigenvalues of
:math:`T_m` (Ritz values :math:`\\vartheta_i`, from ``scipy.linalg.eigh_tridiagonal``) approach the
extreme eigenvalues of :math:`A` geometrically. Every new vector is orthogonalised twice against all
previous ones ("twice is enough", Parlett 1998), which removes the ghost eigenvalues of plain Lanczos in
floating point. Convergence is tested on the Ritz pairs: the residual of :math:`(\\vartheta_i, y_i)` is
exactly :math:`r_i = \\|A y_i - \\vartheta_i y_i\\| = \\beta_{m+1} |s_{m,i}|` with :math:`s_{m,i}` the last
entry of the eigenvector of :math:`T_m`; the error on the eigenvalue is at most :math:`r_i`, and at most
:math:`r_i^2 / \\gamma_i` when the eigenvalue is separated by :math:`\\gamma_i` from the rest of the spectrum.
Compared with the power iteration of PyHessian, which needs :math:`O(\\lambda_1 / (\\lambda_1 - \\lambda_2))`
products per eigenvalue and restarts for each of the top k, one Lanczos run gives all k at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.linalg
import torch
from torch import nn

from landscape._checks import check_finite_result, check_num_eigenvalues, check_positive_float, check_positive_int
from landscape._types import Batches, LinearOperator, LossFn, OperatorLike
from landscape.hessian import HessianOperator, as_operator
from landscape.subspace import ParameterSubspace

__all__ = ["EigenResult", "lanczos", "hessian_eigenvalues", "tridiagonalize"]

Which = Literal["largest", "smallest", "magnitude"]


@dataclass(frozen=True)
class EigenResult:
    """Ritz approximations of k eigenpairs and their diagnostics.

    Attributes:
        eigenvalues: ``(k,)`` float64; descending for ``which="largest"`` and ``"magnitude"`` (by
            absolute value), ascending for ``"smallest"``.
        eigenvectors: ``(k, n)`` unit Ritz vectors in the operator's dtype, or ``None`` unless asked for.
        residuals: ``(k,)`` float64 residual norms :math:`r_i = \\|A y_i - \\vartheta_i y_i\\|`, a rigorous
            bound on the distance from :math:`\\vartheta_i` to the spectrum.
        error_bounds: ``(k,)`` float64 :math:`\\min(r_i, r_i^2 / \\gamma_i)` with :math:`\\gamma_i` the gap to
            the nearest other Ritz value (the quadratic bound of Parlett 1998, Thm 11.7.1, with the
            unknown gap to the rest of the spectrum estimated by the Ritz values).
        iterations: Lanczos iterations taken (one operator product each).
        converged: every error bound is below ``tol`` times its eigenvalue's magnitude.
    """

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor | None
    residuals: torch.Tensor
    error_bounds: torch.Tensor
    iterations: int
    converged: bool


def _random_unit(size: int, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    v = torch.randn(size, generator=generator, dtype=torch.float64).to(like)
    return v / v.norm()


def tridiagonalize(
    operator: LinearOperator,
    start: torch.Tensor,
    max_iter: int,
    *,
    generator: torch.Generator | None = None,
    stop: Callable[[np.ndarray, np.ndarray, float], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Lanczos recurrence with full reorthogonalisation from ``start``.

    Args:
        operator: a symmetric :class:`~landscape.LinearOperator`.
        start: starting vector (normalised here).
        max_iter: at most this many iterations (one product each).
        generator: when given, an exhausted Krylov space (an invariant subspace, :math:`\\beta = 0`) is
            continued from a fresh random vector orthogonal to it, so repeated eigenvalues are found;
            without it the recurrence stops there (what quadrature wants: the probe's measure is exact).
        stop: ``stop(alphas, betas, beta_next)`` after each step ends the recurrence when True.

    Returns:
        ``(alphas, betas, basis)``: the diagonal (m,) and off-diagonal (m,) of :math:`T_m` (the last
        beta is :math:`\\beta_{m+1}`, zero after a breakdown), and the basis :math:`Q_m` as ``(m, n)``.
    """
    n = operator.size
    basis = torch.empty(max_iter, n, dtype=start.dtype, device=start.device)
    alphas, betas = np.zeros(max_iter), np.zeros(max_iter)
    q = start / start.norm()
    breakdown = 1e-10
    steps = 0
    for j in range(max_iter):
        basis[j] = q
        w = operator.matvec(q).to(q)
        alphas[j] = float(w @ q)
        w = w - alphas[j] * q - (betas[j - 1] * basis[j - 1] if j > 0 else 0)
        for _ in range(2):
            w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        betas[j] = float(w.norm())
        steps = j + 1
        # SciPy's tridiagonal solver would fail later with a traceback on NaN: name the cause now.
        check_finite_result(f"the Lanczos recurrence after {steps} operator products", alphas[j] + betas[j])
        scale = max(np.abs(alphas[:steps]).max(), betas[:steps].max(), 1e-300)
        exhausted = betas[j] <= breakdown * scale
        if exhausted:
            betas[j] = 0.0
        # An exhausted Krylov space looks converged (zero residuals) yet may miss copies of repeated
        # eigenvalues, so with a generator the recurrence restarts before the stopping test is heard.
        restart = exhausted and generator is not None
        if stop is not None and not restart and stop(alphas[:steps], betas[:steps], betas[j]):
            break
        if steps == max_iter or steps == n:
            break
        if exhausted:
            if generator is None:
                break
            w = _random_unit(n, generator, q)
            for _ in range(2):
                w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        q = w / w.norm()
    return alphas[:steps], betas[:steps], basis[:steps]


def _select(theta: np.ndarray, k: int, which: Which) -> np.ndarray:
    if which == "largest":
        return np.argsort(-theta, kind="stable")[:k]
    if which == "smallest":
        return np.argsort(theta, kind="stable")[:k]
    return np.argsort(-np.abs(theta), kind="stable")[:k]


def lanczos(
    operator: OperatorLike,
    *,
    k: int = 1,
    tol: float = 1e-3,
    max_iter: int | None = None,
    which: Which = "largest",
    eigenvectors: bool = False,
    seed: int = 0,
) -> EigenResult:
    """The k extreme eigenvalues of a symmetric operator (or matrix) by Lanczos.

    Args:
        operator: a :class:`~landscape.LinearOperator` (e.g. :class:`landscape.HessianOperator`) or a
            symmetric square tensor/array.
        k: number of eigenvalues.
        tol: stop when every error bound (``EigenResult.error_bounds``) is below ``tol`` times its Ritz
            value's magnitude, i.e. at about ``tol`` relative accuracy.
        max_iter: at most this many iterations (one product each); default ``min(n, max(100, 4 k))``,
            enough for the well-separated top of a network's spectrum.
        which: ``"largest"`` (algebraic, the sharp directions), ``"smallest"``, or ``"magnitude"``.
        eigenvectors: also return the unit Ritz vectors.
        seed: seed of the random starting vector.

    Example:
        >>> result = lanczos(torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64)), k=3, tol=1e-8)
        >>> result.eigenvalues.round(decimals=10).tolist(), result.converged
        ([10.0, 9.0, 8.0], True)
    """
    operator = as_operator(operator)
    n = operator.size
    check_num_eigenvalues(k, n)
    check_positive_float("tol", tol)
    if which not in ("largest", "smallest", "magnitude"):
        raise ValueError(f"which must be 'largest', 'smallest' or 'magnitude', got {which!r}")
    max_iter = min(n, max(100, 4 * k)) if max_iter is None else check_positive_int("max_iter", max_iter)
    if max_iter < k:
        raise ValueError(f"max_iter={max_iter} is below k={k}: Lanczos needs at least k iterations; raise max_iter")
    generator = torch.Generator().manual_seed(seed)
    like = torch.empty(0, dtype=operator.dtype, device=operator.device)

    def ritz(alphas: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        theta, s = scipy.linalg.eigh_tridiagonal(alphas, betas[:-1])
        chosen = _select(theta, k, which)
        residual = betas[-1] * np.abs(s[-1, chosen])
        others = np.abs(theta[chosen, None] - theta[None, :])
        others[np.arange(len(chosen)), chosen] = np.inf
        # With a single Ritz value no gap is known, and only the residual bounds the error.
        gap = others.min(axis=1) if len(theta) > 1 else np.zeros(len(chosen))
        return theta[chosen], s[:, chosen], residual, np.minimum(residual, residual**2 / np.maximum(gap, 1e-300))

    def converged(alphas: np.ndarray, betas: np.ndarray, beta_next: float) -> bool:
        if len(alphas) < k:
            return False
        theta, _, _, bound = ritz(alphas, betas)
        floor = np.sqrt(np.finfo(np.float64).eps) * np.abs(theta).max()
        return bool(np.all(bound <= tol * np.maximum(np.abs(theta), floor)))

    start = _random_unit(n, generator, like)
    alphas, betas, basis = tridiagonalize(operator, start, max_iter, generator=generator, stop=converged)
    theta, s, residual, bound = ritz(alphas, betas)
    vectors = None
    if eigenvectors:
        vectors = torch.as_tensor(s.T, dtype=basis.dtype, device=basis.device) @ basis
        vectors = vectors / vectors.norm(dim=1, keepdim=True)
    return EigenResult(
        eigenvalues=torch.as_tensor(theta, dtype=torch.float64),
        eigenvectors=vectors,
        residuals=torch.as_tensor(residual, dtype=torch.float64),
        error_bounds=torch.as_tensor(bound, dtype=torch.float64),
        iterations=len(alphas),
        converged=converged(alphas, betas, betas[-1]),
    )


def hessian_eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Batches,
    *,
    k: int = 1,
    tol: float = 1e-3,
    subspace: ParameterSubspace | None = None,
    max_iter: int | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """The k largest eigenvalues (descending) of the Hessian of the full-data average loss.

    A thin layer over ``lanczos(HessianOperator(model, loss_fn, batches, subspace=subspace), ...)``;
    call those directly for eigenvectors, residuals and the convergence flag.

    Example:
        >>> X = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
        >>> model = nn.Linear(2, 1, bias=False).double()
        >>> hessian_eigenvalues(model, nn.MSELoss(), [(X, torch.zeros(2, 1, dtype=torch.float64))], k=2).round(decimals=12).tolist()
        [4.0, 1.0]
    """
    operator = HessianOperator(model, loss_fn, batches, subspace=subspace)
    return lanczos(operator, k=k, tol=tol, max_iter=max_iter, seed=seed).eigenvalues
