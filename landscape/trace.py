"""Stochastic trace estimators: Hutchinson (1989) and Hutch++ (Meyer, Musco, Musco & Woodruff, 2021).

Hutchinson: for Rademacher probes :math:`v` (entries :math:`\\pm 1`), :math:`\\mathbb{E}[v^\\top A v] =
\\operatorname{tr} A`, with variance :math:`2 \\sum_{i \\ne j} A_{ij}^2`; the estimate is the mean of
:math:`m` samples and its standard error their standard deviation over :math:`\\sqrt{m}`.

Hutch++ spends a third of its :math:`m` products on a sketch :math:`Q = \\operatorname{orth}(A S)` of the
dominant eigenspace, whose trace :math:`\\operatorname{tr}(Q^\\top A Q)` is exact, and the rest on
Hutchinson for the deflated remainder :math:`(I - QQ^\\top) A (I - QQ^\\top)`. For the low-rank-plus-bulk
spectra of network Hessians its error falls as :math:`1/m` instead of :math:`1/\\sqrt{m}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from landscape._checks import check_finite_result, check_positive_int
from landscape._types import Batches, LinearOperator, LossFn, OperatorLike
from landscape.hessian import HessianOperator, as_operator
from landscape.subspace import ParameterSubspace

__all__ = ["TraceResult", "hutchinson", "hutch_plus_plus", "hessian_trace"]


@dataclass(frozen=True)
class TraceResult:
    """A stochastic trace estimate.

    Attributes:
        estimate: the trace estimate.
        stderr: its standard error (0 when the stochastic part is exact, e.g. a diagonal matrix).
        samples: the Rademacher quadratic forms :math:`v^\\top A v` (Hutchinson) or
            :math:`v^\\top (I - QQ^\\top) A (I - QQ^\\top) v` (the stochastic part of Hutch++).
        num_matvecs: operator products spent.
        method: ``"hutchinson"`` or ``"hutch++"``.
    """

    estimate: float
    stderr: float
    samples: torch.Tensor
    num_matvecs: int
    method: str


def _rademacher(count: int, size: int, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return (2.0 * torch.randint(0, 2, (count, size), generator=generator) - 1.0).to(like)


def _apply(operator: LinearOperator, rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The operator on each row, through ``matmat`` (a Hessian shares passes over a block of rows)."""
    return operator.matmat(rows).to(like)


# Bytes of the probes and products of one block of Hutchinson's probes. Blocks cost per vector what
# single products cost when the Hessian's graphs are cached and less when they are not
# (``python -m runners.bench hessian``), so large models lose nothing with blocks of one.
_BLOCK_BYTES = 2**28


def _block_sizes(count: int, operator: LinearOperator) -> list[int]:
    """``count`` split into blocks of at most 8 rows and :data:`_BLOCK_BYTES` of probes plus products."""
    per = 2 * operator.size * torch.empty(0, dtype=operator.dtype).element_size()
    block = max(1, min(8, _BLOCK_BYTES // per))
    return [min(block, count - start) for start in range(0, count, block)]


def _stderr(samples: torch.Tensor) -> float:
    return float(samples.std(unbiased=True) / math.sqrt(len(samples))) if len(samples) > 1 else float("nan")


def hutchinson(operator: OperatorLike, *, num_matvecs: int = 100, seed: int = 0) -> TraceResult:
    """Hutchinson's trace estimate with Rademacher probes and its standard error.

    Args:
        operator: a symmetric :class:`~landscape.LinearOperator` or square matrix.
        num_matvecs: operator products, one per Rademacher probe.
        seed: seed of the probes.

    Example:
        Rademacher probes are exact on diagonal matrices (:math:`v_i^2 = 1`):

        >>> result = hutchinson(torch.diag(torch.tensor([1.0, 2.0, 3.0])), num_matvecs=4)
        >>> result.estimate, result.stderr
        (6.0, 0.0)
    """
    operator = as_operator(operator)
    check_positive_int("num_matvecs", num_matvecs)
    like = torch.empty(0, dtype=operator.dtype, device=operator.device)
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for count in _block_sizes(num_matvecs, operator):  # the same probes as one draw of all of them
        probes = _rademacher(count, operator.size, generator, like)
        samples.append(torch.einsum("ij,ij->i", probes, _apply(operator, probes, like)).double().cpu())
    samples = check_finite_result("Hutchinson's trace samples", torch.cat(samples))
    return TraceResult(float(samples.mean()), _stderr(samples), samples, num_matvecs, "hutchinson")


def hutch_plus_plus(operator: OperatorLike, *, num_matvecs: int = 99, seed: int = 0) -> TraceResult:
    """Hutch++: exact trace on a sketched dominant subspace plus Hutchinson on the rest.

    Args:
        operator: a symmetric :class:`~landscape.LinearOperator` or square matrix.
        num_matvecs: total products :math:`m` (a multiple of 3 is used: :math:`m/3` for the sketch,
            :math:`m/3` for its trace, :math:`m/3` for the remainder).
        seed: seed of the Rademacher sketch and probes.

    Example:
        A sketch as wide as the matrix captures it all, so the trace is exact:

        >>> result = hutch_plus_plus(torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64), num_matvecs=6)
        >>> round(result.estimate, 12), result.stderr < 1e-12
        (5.0, True)
    """
    operator = as_operator(operator)
    check_positive_int("num_matvecs", num_matvecs)
    third = num_matvecs // 3
    if third < 1:
        raise ValueError(f"Hutch++ needs num_matvecs >= 3 (a third each for sketch, its trace and the rest), got {num_matvecs}")
    third = min(third, operator.size)
    like = torch.empty(0, dtype=operator.dtype, device=operator.device)
    generator = torch.Generator().manual_seed(seed)

    sketch = _apply(operator, _rademacher(third, operator.size, generator, like), like)
    basis = torch.linalg.qr(sketch.T).Q.T
    exact = float(check_finite_result("Hutch++'s sketched trace", torch.einsum("ij,ij->", basis, _apply(operator, basis, like))))
    probes = _rademacher(third, operator.size, generator, like)
    deflated = probes - (probes @ basis.T) @ basis
    samples = check_finite_result("Hutch++'s trace samples", torch.einsum("ij,ij->i", deflated, _apply(operator, deflated, like)).double().cpu())
    return TraceResult(exact + float(samples.mean()), _stderr(samples), samples, 3 * third, "hutch++")


def hessian_trace(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Batches,
    *,
    method: Literal["hutchinson", "hutch++"] = "hutchinson",
    num_matvecs: int = 100,
    subspace: ParameterSubspace | None = None,
    seed: int = 0,
) -> float:
    """Trace of the Hessian of the full-data average loss, by Hutchinson or Hutch++.

    A thin layer over :func:`hutchinson` / :func:`hutch_plus_plus` on a :class:`HessianOperator`; call
    those for the standard error.

    Example:
        >>> X = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
        >>> model = nn.Linear(2, 1, bias=False).double()
        >>> hessian_trace(model, nn.MSELoss(), [(X, torch.zeros(2, 1, dtype=torch.float64))], num_matvecs=3)
        5.0
    """
    operator = HessianOperator(model, loss_fn, batches, subspace=subspace)
    if method == "hutchinson":
        return hutchinson(operator, num_matvecs=num_matvecs, seed=seed).estimate
    if method == "hutch++":
        return hutch_plus_plus(operator, num_matvecs=num_matvecs, seed=seed).estimate
    raise ValueError(f"method must be 'hutchinson' or 'hutch++', got {method!r}")
