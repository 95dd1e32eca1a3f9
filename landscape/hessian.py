"""The Hessian of a model's full-data average loss as a linear operator on a parameter subspace.

For coordinates :math:`u` of a subspace :math:`\\delta\\theta = P u` (all parameters, one layer, a mask
of an eFCN's local blocks, or the CNN subspace; see :mod:`landscape.subspace`) the operator is

.. math::

    v \\mapsto P^\\top \\Big( \\sum_b \\tfrac{n_b}{N} \\nabla^2 \\ell_b(\\theta) \\Big) P v,

the exact average over every batch. The gradient graph of the batches is built once and kept within
``cache_bytes`` (:mod:`landscape._objective`), so a product costs one backward pass through it, 1.5-2x
a gradient; batches past the budget are recomputed forward-over-reverse (``jvp(grad(...))``, as
curvlinops does). Both operators here
satisfy the :class:`~landscape.LinearOperator` protocol (``matvec``, ``matmat``, ``size``/``shape``,
``dtype``, ``device``, ``to_scipy``), so the free algorithms of :mod:`landscape.lanczos`,
:mod:`landscape.trace` and :mod:`landscape.density` run on a Hessian as on a plain symmetric matrix,
and ``to_scipy()`` hands either to ``scipy.sparse.linalg``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg
import torch
from torch import nn

from landscape._objective import DEFAULT_CACHE_BYTES, Objective
from landscape._types import Batches, LinearOperator, LossFn, OperatorLike
from landscape.subspace import ParameterSubspace, parameter_subspace

__all__ = ["HessianOperator", "MatrixOperator", "as_operator"]


class _Operator:
    """What both operators share: the shape and the SciPy export (subclasses set ``size`` and define ``matvec``)."""

    size: int

    @property
    def shape(self) -> tuple[int, int]:
        """``(size, size)``, as ``scipy.sparse.linalg`` and numpy expect."""
        return (self.size, self.size)

    def to_scipy(self) -> scipy.sparse.linalg.LinearOperator:
        """The operator as a ``scipy.sparse.linalg.LinearOperator`` on float64 numpy vectors."""

        def matvec(v: np.ndarray) -> np.ndarray:
            return self.matvec(torch.as_tensor(np.ravel(v))).detach().cpu().double().numpy()

        return scipy.sparse.linalg.LinearOperator(self.shape, matvec=matvec, rmatvec=matvec, dtype=np.float64)


class HessianOperator(_Operator):
    """:math:`P^\\top H P` for the average loss of ``model`` over ``batches``.

    Args:
        model: the network; dropout and batch-norm layers must be in eval mode (a Hessian is of a
            deterministic function). It is never modified.
        loss_fn: a batch-mean loss such as ``nn.CrossEntropyLoss()`` (``None`` means that one).
        batches: re-iterable ``(x, y)`` tensor pairs; the operator averages over all of them.
        subspace: the directions to restrict to (:func:`landscape.parameter_subspace`); default all
            trainable parameters.
        cache_bytes: memory the gradient graph of the batches may keep between products (default 1 GiB);
            batches beyond it are recomputed at every product (about twice as slow), 0 caches none.

    Example:
        Least squares :math:`L(w) = \\frac{1}{n}\\|Xw - y\\|^2` has :math:`H = \\frac{2}{n} X^\\top X`:

        >>> X = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
        >>> model = nn.Linear(2, 1, bias=False).double()
        >>> op = HessianOperator(model, nn.MSELoss(), [(X, torch.zeros(2, 1, dtype=torch.float64))])
        >>> op.size, op.matvec(torch.tensor([1.0, 1.0], dtype=torch.float64)).tolist()
        (2, [1.0, 4.0])
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batches: Batches,
        *,
        subspace: ParameterSubspace | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, int) or cache_bytes < 0:
            raise ValueError(f"cache_bytes must be a non-negative integer (0 caches nothing), got {cache_bytes!r}")
        self.subspace = parameter_subspace(model) if subspace is None else subspace
        self.objective = Objective(model, loss_fn, batches, moving=self.subspace.moving, cache_bytes=cache_bytes)
        first = next(iter(self.objective.point.values()))
        self.size = self.subspace.size
        self.device = first.device
        self.dtype = first.dtype
        self.num_matvecs = 0
        # All parameters in their own coordinates: products are accumulated straight into the flat result.
        self._flat = self.subspace.masks is None and self.subspace.linear_map is None

    def _products(self, rows: torch.Tensor, out: torch.Tensor) -> None:
        """The products with ``rows`` written into the zeroed rows of ``out``."""
        tangents = [self.subspace.lift(row) for row in rows]
        if not self._flat:
            for target, product in zip(out, self.objective.hvps(tangents)):
                target.copy_(self.subspace.restrict(product))
            return
        self.objective.hvps(tangents, out=[self.subspace.unflatten(target) for target in out])

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`P^\\top H P v` for a flat vector ``v`` of length ``size``."""
        self.num_matvecs += 1
        out = torch.zeros(1, self.size, dtype=self.dtype, device=self.device)
        self._products(v.to(self.device, self.dtype)[None], out)
        return out[0]

    def matmat(self, rows: torch.Tensor, *, block: int = 8) -> torch.Tensor:
        """:math:`P^\\top H P` applied to each row of ``rows`` (``(b, size)``), ``block`` rows per pass over the data.

        Each product costs what :meth:`matvec` costs on a cached batch; on a batch past ``cache_bytes`` the
        rows of a block share one graph built for them, so a product costs less than through
        :meth:`matvec`. (Mapping ``vmap`` over the tangents was slower per vector than single products on
        convolutions, ``python -m runners.bench hessian``.) Memory grows with ``block``.
        """
        rows = rows.to(self.device, self.dtype)
        out = torch.zeros(len(rows), self.size, dtype=self.dtype, device=self.device)
        for chunk, target in zip(rows.split(block), out.split(block)):
            self.num_matvecs += len(chunk)
            self._products(chunk, target)
        return out

    def gradient(self) -> torch.Tensor:
        """:math:`P^\\top \\nabla L(\\theta)`, the restricted gradient, as a flat vector."""
        return self.subspace.restrict(self.objective.gradient())


class MatrixOperator(_Operator):
    """A dense symmetric matrix behind the operator interface (tests, small problems).

    Example:
        >>> MatrixOperator(torch.diag(torch.tensor([1.0, 2.0]))).matvec(torch.ones(2)).tolist()
        [1.0, 2.0]
    """

    def __init__(self, matrix: torch.Tensor) -> None:
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"expected a square matrix, got shape {tuple(matrix.shape)}")
        self.matrix = matrix
        self.size = matrix.shape[0]
        self.device = matrix.device
        self.dtype = matrix.dtype

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`A v` for a flat vector ``v``."""
        return self.matrix @ v.to(self.matrix)

    def matmat(self, rows: torch.Tensor) -> torch.Tensor:
        """:math:`A` applied to each row of ``rows`` (``(b, size)``)."""
        return rows.to(self.matrix) @ self.matrix.T


def as_operator(operator: OperatorLike) -> LinearOperator:
    """``operator`` if it satisfies :class:`~landscape.LinearOperator`; a square tensor or array is wrapped."""
    if isinstance(operator, LinearOperator) and isinstance(operator.size, int):
        return operator
    if isinstance(operator, np.ndarray) or torch.is_tensor(operator):
        return MatrixOperator(torch.as_tensor(operator))
    raise ValueError(
        f"expected a landscape.LinearOperator (matvec, matmat, size, shape, dtype, device, to_scipy) or a square matrix, "
        f"got {type(operator).__name__}; "
        "build one with landscape.HessianOperator(model, loss_fn, batches)"
    )
