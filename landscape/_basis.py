"""The stored Lanczos vectors: allocated one at a time, in a chosen dtype and device, with a memory check.

A basis of ``m`` vectors of a 126.8M-parameter eFCN holds ``m`` x 0.47 GiB, so it is never allocated
ahead (``torch.empty(max_iter, n)`` asked 50.7 GB for a top-5 that converges in ~17 steps) and can live
elsewhere than the products (``device="cpu"`` while the Hessian runs on a GPU) or in a narrower dtype.
Products with it go through blocks of at most :data:`_BLOCK_ENTRIES` entries, so no temporary grows
with ``m``: orthogonalisation is block Gram-Schmidt, done twice ("twice is enough", Parlett 1998), and
the rotations of a restart are done in place, one slice of coordinates at a time.
"""

from __future__ import annotations

import numpy as np
import torch

from embeddings import MemoryBudgetError, default_max_bytes

# Entries (vectors x coordinates) of the largest temporary block: 16 MiB in float32.
_BLOCK_ENTRIES = 2**22

# Vectors of the operator's size a run needs besides its basis, measured on a 16.6M-parameter eFCN: a
# Hessian product peaks at 4 (its flat result, autograd's product and 1.5 of autograd's temporaries),
# the cached graph of a batch keeps its gradient (1), and Lanczos's residual and a start vector (2).
WORK_VECTORS = 7


class Basis:
    """Orthonormal vectors of length ``size``, stored in ``dtype`` on ``device``, appended as they come."""

    def __init__(self, size: int, *, dtype: torch.dtype, device: torch.device) -> None:
        self.size = size
        self.dtype = dtype
        self.device = device
        self.vectors: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.vectors)

    def append(self, q: torch.Tensor) -> None:
        """Store ``q`` (a copy in the basis' dtype and device)."""
        self.vectors.append(q.detach().to(device=self.device, dtype=self.dtype, copy=True))

    def drop_oldest(self, keep: int) -> None:
        """Forget all but the newest ``keep`` vectors."""
        del self.vectors[: max(len(self.vectors) - keep, 0)]

    def _groups(self) -> list[list[torch.Tensor]]:
        per = max(1, _BLOCK_ENTRIES // max(self.size, 1))
        return [self.vectors[i : i + per] for i in range(0, len(self.vectors), per)]

    def project_out(self, w: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        """``w`` minus its projection on the basis (twice), and the coefficients removed, ``Q^T w``.

        The arithmetic runs on the basis' device in the wider of the two dtypes, in place when that is
        ``w``'s own (``w`` is then overwritten); the result comes back on ``w``'s device and dtype.
        """
        if not self.vectors:
            return w, np.zeros(0)
        work = torch.promote_types(w.dtype, self.dtype)
        x = w.to(device=self.device, dtype=work)
        total = torch.zeros(len(self.vectors), dtype=work, device=self.device)
        for _ in range(2):
            start = 0
            for group in self._groups():
                block = torch.stack(group).to(work) if len(group) > 1 else group[0].to(work)[None]
                h = block @ x
                x.addmv_(block.T, h, alpha=-1)
                total[start : start + len(group)] += h
                start += len(group)
        return x.to(device=w.device, dtype=w.dtype), total.double().cpu().numpy()

    def combine(self, coefficients: np.ndarray, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """``coefficients.T @ Q`` as ``(r, size)`` rows: Ritz vectors from eigenvectors of the projected matrix."""
        out = torch.empty(coefficients.shape[1], self.size, dtype=dtype, device=device)
        work = torch.promote_types(dtype, self.dtype)
        c = torch.as_tensor(coefficients.T, dtype=work, device=self.device)
        step = max(1, _BLOCK_ENTRIES // max(len(self.vectors), 1))
        for start in range(0, self.size, step):
            block = torch.stack([q[start : start + step].to(work) for q in self.vectors])
            out[:, start : start + step] = (c @ block).to(device=device, dtype=dtype)
        return out

    def rotate(self, coefficients: np.ndarray) -> None:
        """Replace the basis by ``coefficients.T @ Q`` (``r <= len`` vectors) in place, a slice at a time.

        Only one slice of every vector is copied at once, so a restart needs no second basis.
        """
        r = coefficients.shape[1]
        work = torch.promote_types(self.dtype, torch.float32)
        c = torch.as_tensor(coefficients.T, dtype=work, device=self.device)
        step = max(1, _BLOCK_ENTRIES // max(len(self.vectors), 1))
        for start in range(0, self.size, step):
            block = torch.stack([q[start : start + step].to(work) for q in self.vectors])
            new = c @ block
            for i in range(r):
                self.vectors[i][start : start + step] = new[i]
        del self.vectors[r:]


def vector_bytes(size: int, dtype: torch.dtype) -> int:
    """Bytes of one vector of ``size`` entries of ``dtype``."""
    return size * torch.empty(0, dtype=dtype).element_size()


def check_basis_memory(
    size: int,
    stored: int,
    *,
    dtype: torch.dtype,
    work_dtype: torch.dtype,
    device: torch.device,
    max_bytes: int | None,
    least: int,
) -> None:
    """Raise :class:`~embeddings.MemoryBudgetError` before a run whose vectors cannot fit ``max_bytes``.

    The estimate is ``stored`` basis vectors in ``dtype`` plus :data:`WORK_VECTORS` in ``work_dtype``;
    the default budget is half of the memory free now on ``device`` (:func:`embeddings.default_max_bytes`).
    The message names the number of stored vectors that would fit (``max_basis_vectors``) when that is
    at least ``least``, the fewest the run can work with.
    """
    per, work = vector_bytes(size, dtype), WORK_VECTORS * vector_bytes(size, work_dtype)
    needed = stored * per + work
    budget = default_max_bytes(device) if max_bytes is None else max_bytes
    if needed <= budget:
        return
    fits = (budget - work) // per
    origin = "max_bytes" if max_bytes is not None else f"half of the memory free on {device}"
    advice = (f"pass max_basis_vectors={fits} (CLI: --max-basis-vectors {fits}; fewer vectors restart more often)"
              if least <= fits < stored else "no basis fits: free memory, keep the basis on another device (basis_device) or in a narrower basis_dtype")
    raise MemoryBudgetError(
        f"Lanczos would keep {stored} vectors of {size:,} entries plus {WORK_VECTORS} working ones, {needed / 2**30:.3g} GiB, "
        f"more than the budget of {budget / 2**30:.3g} GiB ({origin}); {advice}"
    )
