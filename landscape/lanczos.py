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

Memory (a vector of the AlexNet eFCN is 0.47 GiB): the basis is allocated as it grows
(:mod:`landscape._basis`), in a chosen dtype and device. Top-1 keeps no basis at all: plain Lanczos
needs three vectors, and the ghost copies that loss of orthogonality creates once :math:`\\vartheta_1`
has converged do not move it. Top-k keeps at most ``max_basis_vectors`` and restarts thick when it
needs more (Wu & Simon 2000, in the Krylov-Schur form of Stewart 2001): the basis is rotated in place
onto the best Ritz vectors, whose Rayleigh-Ritz information is kept whole, so a restart costs only a
few extra products instead of starting over. Spectral densities (:mod:`landscape.density`) need only
the tridiagonal and keep a bounded window, by default none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.linalg
import torch
from torch import nn

from landscape._basis import RECURRENCE_VECTORS, Basis, check_basis_memory
from landscape._checks import check_finite_result, check_num_eigenvalues, check_positive_float, check_positive_int
from landscape._types import Batches, LinearOperator, LossFn, OperatorLike
from landscape.hessian import HessianOperator, as_operator
from landscape.subspace import ParameterSubspace

__all__ = ["EigenResult", "lanczos", "hessian_eigenvalues", "tridiagonalize", "default_basis_vectors"]

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
        restarts: thick restarts taken (0 when the basis never filled ``max_basis_vectors``).
        stored_vectors: most basis vectors held at once (0 for plain top-1 Lanczos, which keeps none).
    """

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor | None
    residuals: torch.Tensor
    error_bounds: torch.Tensor
    iterations: int
    converged: bool
    restarts: int = 0
    stored_vectors: int = 0


def _random_unit(size: int, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    v = torch.randn(size, generator=generator, dtype=torch.float64).to(like)
    return v / v.norm()


def _product(operator: LinearOperator, q: torch.Tensor) -> torch.Tensor:
    """:math:`A q`, a tensor of its own: the recurrences update it in place."""
    w = operator.matvec(q).to(q)
    return w.clone() if w.untyped_storage().data_ptr() == q.untyped_storage().data_ptr() else w


def _exhausted(beta: float, scale: float) -> bool:
    """An invariant subspace (Krylov space exhausted): :math:`\\beta` is rounding noise of the operator's scale."""
    return beta <= 1e-10 * max(scale, 1e-300)


def tridiagonalize(
    operator: LinearOperator,
    start: torch.Tensor,
    max_iter: int,
    *,
    generator: torch.Generator | None = None,
    stop: Callable[[np.ndarray, np.ndarray, float], bool] | None = None,
    window: int | None = None,
    basis_dtype: torch.dtype | None = None,
    basis_device: torch.device | str | None = None,
) -> tuple[np.ndarray, np.ndarray, Basis]:
    """The Lanczos three-term recurrence from ``start``, reorthogonalised against the newest ``window`` vectors.

    Args:
        operator: a symmetric :class:`~landscape.LinearOperator`.
        start: starting vector (normalised here).
        max_iter: at most this many iterations (one product each).
        generator: when given, an exhausted Krylov space (an invariant subspace, :math:`\\beta = 0`) is
            continued from a fresh random vector orthogonal to the kept ones, so repeated eigenvalues are
            found; without it the recurrence stops there (what quadrature wants: the probe's measure is exact).
        stop: ``stop(alphas, betas, beta_next)`` after each step ends the recurrence when True.
        window: vectors kept for reorthogonalisation: ``None`` keeps all (full reorthogonalisation, no
            ghost eigenvalues), ``0`` none (plain Lanczos: three vectors whatever the length; once a Ritz
            value converges, rounding makes copies of it appear, "ghosts", Paige 1971), ``w`` the newest w.
        basis_dtype, basis_device: where the kept vectors live (default: the operator's).

    Returns:
        ``(alphas, betas, basis)``: the diagonal (m,) and off-diagonal (m,) of :math:`T_m` (the last
        beta is :math:`\\beta_{m+1}`, zero after a breakdown), and the kept vectors (the whole
        :math:`Q_m` when ``window`` is None).
    """
    n = operator.size
    basis = Basis(n, dtype=basis_dtype or start.dtype, device=torch.device(basis_device or start.device))
    alphas, betas = [], []
    q, previous = start / start.norm(), None
    for j in range(max_iter):
        if window != 0:
            basis.append(q)
            q = basis.latest(q)
            if window is not None:
                basis.drop_oldest(window)
        w = _product(operator, q)
        alphas.append(float(w @ q))
        # In place: at 100M parameters every temporary vector is another 0.4 GiB.
        w.add_(q, alpha=-alphas[j])
        if j > 0:
            w.add_(previous, alpha=-betas[j - 1])
        w, _ = basis.project_out(w)
        betas.append(float(w.norm()))
        steps = j + 1
        # SciPy's tridiagonal solver would fail later with a traceback on NaN: name the cause now.
        check_finite_result(f"the Lanczos recurrence after {steps} operator products", alphas[j] + betas[j])
        exhausted = _exhausted(betas[j], max(max(map(abs, alphas)), max(betas)))
        if exhausted:
            betas[j] = 0.0
        # An exhausted Krylov space looks converged (zero residuals) yet may miss copies of repeated
        # eigenvalues, so with a generator the recurrence restarts before the stopping test is heard.
        restart = exhausted and generator is not None
        if stop is not None and not restart and stop(np.array(alphas), np.array(betas), betas[j]):
            break
        if steps == max_iter or steps == n:
            break
        if exhausted:
            if generator is None:
                break
            w, _ = basis.project_out(_random_unit(n, generator, q))
        previous, q = q, w.div_(w.norm())
    return np.array(alphas), np.array(betas), basis


@dataclass
class _Restarted:
    """The state a thick-restart run ends in: :math:`A Q = Q T + \\beta\\, q_{+} e_p^\\top` with ``Q`` the basis."""

    matrix: np.ndarray
    beta: float
    basis: Basis
    products: int
    restarts: int
    most_vectors: int


def _thick_restart(
    operator: LinearOperator,
    *,
    max_iter: int,
    max_vectors: int,
    keep: int,
    order: Callable[[np.ndarray], np.ndarray],
    stop: Callable[[np.ndarray, np.ndarray, float], bool],
    generator: torch.Generator,
    basis: Basis,
) -> _Restarted:
    """Thick-restart Lanczos (Wu & Simon 2000) in the Krylov-Schur form (Stewart 2001), full reorthogonalisation.

    Each step projects :math:`A q_j` on every stored vector (twice); the coefficients are column j of
    :math:`T = Q^\\top A Q` (tridiagonal before a restart, an arrowhead block after). When ``max_vectors``
    are stored, the basis is rotated in place onto the ``keep`` best Ritz vectors (``order`` ranks the
    Ritz values), which satisfy :math:`A y_i = \\vartheta_i y_i + \\beta s_{p,i} q_{+}`, and the recurrence
    goes on from :math:`q_{+}`. The residual of a Ritz pair stays :math:`\\beta |s_{p,i}|`.

    The random start is drawn here, from ``generator``, so that no caller keeps it. During a product the
    run holds the basis, its newest vector as a view of it (or ``w`` itself when the basis lives in another
    dtype or device) and the product: no other vector of the operator's size.
    """
    n = operator.size
    matrix = np.zeros((max_vectors, max_vectors))
    w = _random_unit(n, generator, torch.empty(0, dtype=operator.dtype, device=operator.device))
    products = restarts = most = 0
    while True:
        basis.append(w)
        q = basis.latest(w)
        del w  # a copy is in the basis: the last residual is not kept through the next product
        j = len(basis) - 1
        w = _product(operator, q)
        products += 1
        most = max(most, len(basis))
        w, h = basis.project_out(w)
        matrix[: j + 1, j] = matrix[j, : j + 1] = h
        beta = float(w.norm())
        check_finite_result(f"the Lanczos recurrence after {products} operator products", beta + float(h.sum()))
        exhausted = _exhausted(beta, np.abs(matrix[: j + 1, : j + 1]).max())
        beta = 0.0 if exhausted else beta
        theta, s = np.linalg.eigh(matrix[: j + 1, : j + 1])
        # As in tridiagonalize: an exhausted space may hide copies of repeated eigenvalues.
        if not exhausted and stop(theta, s[-1], beta):
            break
        if products >= max_iter or len(basis) == n:
            break
        if exhausted:
            w, _ = basis.project_out(_random_unit(n, generator, q))
            w.div_(w.norm())
        else:
            w.div_(beta)
        if len(basis) == max_vectors:
            chosen = order(theta)[:keep]
            basis.rotate(s[:, chosen])
            matrix = np.zeros_like(matrix)
            matrix[np.arange(keep), np.arange(keep)] = theta[chosen]
            restarts += 1
    return _Restarted(matrix[: len(basis), : len(basis)], beta, basis, products, restarts, most)


def _order(which: Which) -> Callable[[np.ndarray], np.ndarray]:
    """Ranking of Ritz values, wanted first."""
    if which == "largest":
        return lambda theta: np.argsort(-theta, kind="stable")
    if which == "smallest":
        return lambda theta: np.argsort(theta, kind="stable")
    return lambda theta: np.argsort(-np.abs(theta), kind="stable")


def default_basis_vectors(k: int) -> int:
    """Vectors a top-k run stores by default: 20 or 3k; top-5 of a network's Hessian then needs no restart."""
    return max(20, 3 * k)


def lanczos(
    operator: OperatorLike,
    *,
    k: int = 1,
    tol: float = 1e-3,
    max_iter: int | None = None,
    which: Which = "largest",
    eigenvectors: bool = False,
    seed: int = 0,
    max_basis_vectors: int | None = None,
    basis_dtype: torch.dtype | None = None,
    basis_device: torch.device | str | None = None,
    max_bytes: int | None = None,
) -> EigenResult:
    """The k extreme eigenvalues of a symmetric operator (or matrix) by Lanczos.

    Memory: top-1 without eigenvectors stores no basis (plain Lanczos, three vectors; copies of a
    converged Ritz value may appear later, which leaves the top one exact). Otherwise at most
    ``max_basis_vectors`` vectors are stored, allocated as the basis grows, and a run that needs more
    restarts thick (Wu & Simon 2000): it keeps the best ``(max_basis_vectors + k) // 2`` Ritz vectors
    (at most ``max_basis_vectors - 2``) and goes on, at the price of some extra products. A run whose
    vectors cannot fit ``max_bytes`` is refused before the first product
    (:class:`embeddings.MemoryBudgetError`, naming a ``max_basis_vectors`` that fits).

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
        max_basis_vectors: most Lanczos vectors stored at once, at least ``k + 2`` (default
            :func:`default_basis_vectors`, 20 for k <= 6; capped at ``max_iter`` and n, where no restart
            is needed).
        basis_dtype: dtype of the stored vectors (default the operator's; a narrower one halves memory
            but limits orthogonality, hence accuracy, to its precision).
        basis_device: device of the stored vectors (default the operator's; e.g. ``"cpu"`` while the
            products run on a GPU).
        max_bytes: memory the run's vectors may take (default half of what is free on the basis device).

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
    plain = k == 1 and not eigenvectors and max_basis_vectors is None
    limit = default_basis_vectors(k) if max_basis_vectors is None else check_positive_int("max_basis_vectors", max_basis_vectors)
    stored = 0 if plain else min(limit, max_iter, n)
    if not plain and stored < min(max_iter, n) and stored < k + 2:
        raise ValueError(f"max_basis_vectors={limit} is below k + 2 = {k + 2}: a restart keeps k Ritz vectors and needs room "
                         "to grow; pass max_basis_vectors >= k + 2")
    basis_device = torch.device(basis_device or operator.device)
    basis_dtype = basis_dtype or operator.dtype
    check_basis_memory(
        n, stored or RECURRENCE_VECTORS, dtype=basis_dtype, work_dtype=operator.dtype, device=basis_device, max_bytes=max_bytes,
        least=k + 2
    )
    generator = torch.Generator().manual_seed(seed)
    order = _order(which)

    def ritz(theta: np.ndarray, last_row: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        chosen = order(theta)[:k]
        residual = beta * np.abs(last_row[chosen])
        others = np.abs(theta[chosen, None] - theta[None, :])
        others[np.arange(len(chosen)), chosen] = np.inf
        # With a single Ritz value no gap is known, and only the residual bounds the error.
        gap = others.min(axis=1) if len(theta) > 1 else np.zeros(len(chosen))
        return chosen, theta[chosen], residual, np.minimum(residual, residual**2 / np.maximum(gap, 1e-300))

    def converged(theta: np.ndarray, last_row: np.ndarray, beta: float) -> bool:
        if len(theta) < k:
            return False
        _, values, _, bound = ritz(theta, last_row, beta)
        floor = np.sqrt(np.finfo(np.float64).eps) * np.abs(values).max()
        return bool(np.all(bound <= tol * np.maximum(np.abs(values), floor)))

    def tridiagonal_converged(alphas: np.ndarray, betas: np.ndarray, beta: float) -> bool:
        theta, s = scipy.linalg.eigh_tridiagonal(alphas, betas[:-1])
        return converged(theta, s[-1], beta)

    if plain:
        start = _random_unit(n, generator, torch.empty(0, dtype=operator.dtype, device=operator.device))
        alphas, betas, _ = tridiagonalize(operator, start, max_iter, generator=generator, stop=tridiagonal_converged, window=0)
        theta, s = scipy.linalg.eigh_tridiagonal(alphas, betas[:-1])
        beta, products, restarts, most, vectors = betas[-1], len(alphas), 0, 0, None
    else:
        run = _thick_restart(operator, max_iter=max_iter, max_vectors=stored, keep=min(stored - 2, max(k, (stored + k) // 2)),
                             order=order, stop=converged, generator=generator,
                             basis=Basis(n, dtype=basis_dtype, device=basis_device))
        theta, s = np.linalg.eigh(run.matrix)
        beta, products, restarts, most = run.beta, run.products, run.restarts, run.most_vectors
    chosen, values, residual, bound = ritz(theta, s[-1], beta)
    vectors = None
    if eigenvectors:
        vectors = run.basis.combine(s[:, chosen], dtype=operator.dtype, device=operator.device)
        vectors = vectors / vectors.norm(dim=1, keepdim=True)
    return EigenResult(
        eigenvalues=torch.as_tensor(values, dtype=torch.float64),
        eigenvectors=vectors,
        residuals=torch.as_tensor(residual, dtype=torch.float64),
        error_bounds=torch.as_tensor(bound, dtype=torch.float64),
        iterations=products,
        converged=converged(theta, s[-1], beta),
        restarts=restarts,
        stored_vectors=most,
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
    max_basis_vectors: int | None = None,
) -> torch.Tensor:
    """The k largest eigenvalues (descending) of the Hessian of the full-data average loss.

    A thin layer over ``lanczos(HessianOperator(model, loss_fn, batches, subspace=subspace), ...)``;
    call those directly for eigenvectors, residuals, the convergence flag and the basis' dtype and
    device (``max_basis_vectors`` bounds the stored vectors, see :func:`lanczos`).

    Example:
        >>> X = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
        >>> model = nn.Linear(2, 1, bias=False).double()
        >>> hessian_eigenvalues(model, nn.MSELoss(), [(X, torch.zeros(2, 1, dtype=torch.float64))], k=2).round(decimals=12).tolist()
        [4.0, 1.0]
    """
    operator = HessianOperator(model, loss_fn, batches, subspace=subspace)
    return lanczos(operator, k=k, tol=tol, max_iter=max_iter, seed=seed, max_basis_vectors=max_basis_vectors).eigenvalues
