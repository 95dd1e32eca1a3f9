"""The stored Lanczos vectors: allocated one at a time, in a chosen dtype and device, with a memory check.

A basis of ``m`` vectors of a 126.8M-parameter eFCN holds ``m`` x 0.47 GiB, so it is never allocated
ahead (``torch.empty(max_iter, n)`` asked 50.7 GB for a top-5 that converges in ~17 steps) and can live
elsewhere than the products (``device="cpu"`` while the Hessian runs on a GPU) or in a narrower dtype.
Vectors are stored as rows of chunks of at most :data:`_BLOCK_ENTRIES` entries, so no temporary grows
with ``m``: orthogonalisation is block Gram-Schmidt on views of the chunks, done twice ("twice is
enough", Parlett 1998), and the rotations of a restart are done in place, one slice of coordinates at
a time.
"""

from __future__ import annotations

import numpy as np
import torch

from embeddings import MemoryBudgetError, default_max_bytes

# Entries (vectors x coordinates) of the largest temporary block: 16 MiB in float32.
_BLOCK_ENTRIES = 2**22

# Vectors of the operator's size a run holds besides its basis at its peak, a Hessian product through the
# cached graph, measured (VmHWM) on the 126.8M-parameter AlexNet eFCN and a 21.5M-parameter eFCN: the flat
# result that autograd accumulates into (1) and autograd's temporaries (2.0 and 2.4: the per-batch terms of
# the largest layers waiting to be summed). The cached graph keeps no gradient values (they are freed once
# it is built), the newest Lanczos vector is a view of the basis and the residual is the product itself,
# updated in place. Rounded up to 4.
WORK_VECTORS = 4

# Vectors of plain Lanczos, which keeps no basis: its start, current and previous vectors.
RECURRENCE_VECTORS = 3


class Basis:
    """Orthonormal vectors of length ``size``, stored in ``dtype`` on ``device``, appended as they come.

    The vectors are rows of chunks of at most :data:`_BLOCK_ENTRIES` entries allocated one at a time
    (one vector per chunk at 100M parameters, no memory reserved ahead; many per chunk for small
    operators, so that products with the basis are matrix products on views, without copies).
    """

    def __init__(self, size: int, *, dtype: torch.dtype, device: torch.device) -> None:
        self.size = size
        self.dtype = dtype
        self.device = device
        self.rows = max(1, _BLOCK_ENTRIES // max(size, 1))
        self._chunks: list[torch.Tensor] = []
        self._first = 0  # index, in the first chunk, of the oldest vector kept
        self._count = 0  # vectors kept

    def __len__(self) -> int:
        return self._count

    def append(self, q: torch.Tensor) -> None:
        """Store a copy of ``q`` in the basis' dtype and device."""
        end = self._first + self._count
        if end == len(self._chunks) * self.rows:
            self._chunks.append(torch.empty(self.rows, self.size, dtype=self.dtype, device=self.device))
        self._chunks[end // self.rows][end % self.rows] = q.detach()
        self._count += 1

    def latest(self, like: torch.Tensor) -> torch.Tensor:
        """The newest vector: a view of the basis when it has ``like``'s dtype and device, else ``like``.

        Holding the view instead of ``like`` spares a vector of memory while the basis stores a copy.
        """
        end = self._first + self._count - 1
        row = self._chunks[end // self.rows][end % self.rows]
        return row if (row.dtype, row.device) == (like.dtype, like.device) else like

    def drop_oldest(self, keep: int) -> None:
        """Forget all but the newest ``keep`` vectors (chunks emptied this way are freed)."""
        dropped = max(self._count - keep, 0)
        self._first += dropped
        self._count -= dropped
        while self._first >= self.rows:
            self._chunks.pop(0)
            self._first -= self.rows

    def blocks(self) -> list[torch.Tensor]:
        """The kept vectors as row blocks (views of the chunks), oldest first."""
        out, start, end = [], self._first, self._first + self._count
        for index, chunk in enumerate(self._chunks):
            low, high = max(start - index * self.rows, 0), min(end - index * self.rows, self.rows)
            if low < high:
                out.append(chunk[low:high])
        return out

    def project_out(self, w: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        """``w`` minus its projection on the basis (block Gram-Schmidt, twice), and the coefficients removed, ``Q^T w``.

        The arithmetic runs on the basis' device in the wider of the two dtypes, in place when that is
        ``w``'s own (``w`` is then overwritten); the result comes back on ``w``'s device and dtype.
        """
        if not self._count:
            return w, np.zeros(0)
        work = torch.promote_types(w.dtype, self.dtype)
        x = w.to(device=self.device, dtype=work)
        total = torch.zeros(self._count, dtype=work, device=self.device)
        for _ in range(2):
            start = 0
            for block in self.blocks():
                block = block.to(work)
                h = block @ x
                x.addmv_(block.T, h, alpha=-1)
                total[start : start + len(block)] += h
                start += len(block)
        return x.to(device=w.device, dtype=w.dtype), total.double().cpu().numpy()

    def _slices(self) -> range:
        return range(0, self.size, max(1, _BLOCK_ENTRIES // max(self._count, 1)))

    def _columns(self, start: int, stop: int, dtype: torch.dtype) -> torch.Tensor:
        """Coordinates ``start:stop`` of every kept vector, ``(len, stop - start)``, a copy in ``dtype``."""
        return torch.cat([block[:, start:stop] for block in self.blocks()]).to(dtype)

    def combine(self, coefficients: np.ndarray, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """``coefficients.T @ Q`` as ``(r, size)`` rows: Ritz vectors from eigenvectors of the projected matrix."""
        out = torch.empty(coefficients.shape[1], self.size, dtype=dtype, device=device)
        work = torch.promote_types(dtype, self.dtype)
        c = torch.as_tensor(coefficients.T, dtype=work, device=self.device)
        step = self._slices().step
        for start in self._slices():
            out[:, start : start + step] = (c @ self._columns(start, start + step, work)).to(device=device, dtype=dtype)
        return out

    def rotate(self, coefficients: np.ndarray) -> None:
        """Replace the basis by ``coefficients.T @ Q`` (``r <= len`` vectors) in place, a slice of coordinates at a time.

        Only one slice of every vector is copied at once, so a restart needs no second basis.
        """
        r = coefficients.shape[1]
        work = torch.promote_types(self.dtype, torch.float32)
        c = torch.as_tensor(coefficients.T, dtype=work, device=self.device)
        step = self._slices().step
        for start in self._slices():
            new = c @ self._columns(start, start + step, work)
            done = 0
            for block in self.blocks():
                take = min(len(block), r - done)
                if take <= 0:
                    break
                block[:take, start : start + step] = new[done : done + take]
                done += take
        self._count = r
        del self._chunks[(self._first + r - 1) // self.rows + 1 :]


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
