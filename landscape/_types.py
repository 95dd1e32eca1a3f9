"""The types every signature of ``landscape`` shares, defined once (see the package docstring's convention)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse.linalg
import torch

__all__ = ["Batches", "Params", "LossFn", "LinearOperator", "OperatorLike"]

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
"""``(x, y)`` tensor pairs, re-iterable (a list or a DataLoader, not a generator): probes pass over them often."""

Params = Mapping[str, torch.Tensor]
"""Parameters (or buffers, or tangents) by name, as ``model.named_parameters()`` names them."""

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None
"""A batch-mean loss ``loss_fn(outputs, targets)``, such as ``nn.CrossEntropyLoss()``; ``None`` means that one."""


@runtime_checkable
class LinearOperator(Protocol):
    """A symmetric linear operator on flat vectors of length ``size``, what the free algorithms consume.

    :class:`~landscape.HessianOperator` and :class:`~landscape.MatrixOperator` satisfy it; so does any
    object with these members (``isinstance(op, LinearOperator)`` checks that they exist).
    """

    size: int
    dtype: torch.dtype
    device: torch.device

    @property
    def shape(self) -> tuple[int, int]:
        """``(size, size)``."""

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """The product with one vector ``(size,)``."""

    def matmat(self, rows: torch.Tensor) -> torch.Tensor:
        """The product with each row of ``rows`` (``(b, size)``), returned as rows."""

    def to_scipy(self) -> scipy.sparse.linalg.LinearOperator:
        """The operator on float64 numpy vectors, for ``scipy.sparse.linalg``."""


OperatorLike = LinearOperator | torch.Tensor | np.ndarray
"""What the free algorithms accept: an operator, or a square symmetric matrix (wrapped in a MatrixOperator)."""
