"""Data-parallel probes over ``torch.distributed``: shard the data, all-reduce exact sums.

Every probe of this package is a full-data average :math:`\\frac{1}{N}\\sum_b n_b \\, s_b` of per-batch
quantities :math:`s_b` (losses, correct counts, gradients, Hessian-vector products, BatchNorm
statistics). With :math:`R` processes, rank :math:`r` takes batches :math:`r, r+R, r+2R, \\dots`
(:func:`shard`), sums :math:`n_b s_b` over them, and one all-reduce gives every rank the global sums
and the global count :math:`N`; the average is the single-process one up to the order of floating-point
additions. Because the all-reduced result is identical on every rank, algorithms built on it (Lanczos,
Hutchinson, SLQ with seeded generators) take the same steps everywhere, and stopping tests agree.

Every helper is a no-op in a single process (``torch.distributed`` not initialised, or one rank), so
library code calls them unconditionally. Launch with ``torchrun --nproc-per-node R script.py`` and
wrap the script in :func:`process_group` (NCCL on CUDA, gloo on CPU).

Example:
    >>> shard([1, 2, 3, 4, 5])  # one process: everything
    [1, 2, 3, 4, 5]
    >>> all_reduce_sum(torch.tensor([1.0, 2.0])).tolist(), world_size(), rank(), is_main_process()
    ([1.0, 2.0], 1, 0, True)
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Literal, TypeVar

import torch
import torch.distributed as dist

from landscape._types import Params

__all__ = [
    "shard", "all_reduce_sum", "reduce_floats", "is_main_process", "world_size", "rank", "process_group", "is_distributed",
]

T = TypeVar("T")


def is_distributed() -> bool:
    """Whether this process is one of several ranks of an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    """Whether this process writes files and prints (rank 0, or the only process)."""
    return rank() == 0


def shard(batches: Iterable[T]) -> list[T]:
    """The batches of this rank: indices ``rank, rank + world, ...`` (all of them in one process).

    Deterministic and disjoint: the shards of all ranks are a partition of ``batches``. A rank may get
    no batch when there are fewer batches than ranks; its sums are then zero.
    """
    items = list(batches)
    return items[rank():: world_size()] if is_distributed() else items


def all_reduce_sum(value: torch.Tensor | Params) -> torch.Tensor | dict[str, torch.Tensor]:
    """Sum ``value`` over ranks (a tensor, or a dict of tensors packed into one message).

    Returns a new tensor (dict) with the sum, identical on every rank; the input itself in one process.
    A dict travels as one flat buffer, one collective instead of one per parameter.
    """
    if not is_distributed():
        return dict(value) if isinstance(value, Mapping) else value
    if isinstance(value, Mapping):
        names = list(value)
        flat = torch.cat([value[n].reshape(-1) for n in names])  # promotes mixed dtypes to the widest
        dist.all_reduce(flat)
        parts = flat.split([value[n].numel() for n in names])
        return {n: part.view_as(value[n]).to(value[n].dtype) for n, part in zip(names, parts)}
    total = value.clone()
    dist.all_reduce(total)
    return total


def reduce_floats(*values: float, device: torch.device | str = "cpu") -> list[float]:
    """Sum Python numbers over ranks in float64 (one collective); the numbers themselves in one process."""
    if not is_distributed():
        return list(values)
    return all_reduce_sum(torch.tensor(values, dtype=torch.float64, device=_collective_device(device))).tolist()


def _collective_device(device: torch.device | str) -> torch.device:
    """NCCL moves CUDA tensors only; gloo moves CPU tensors."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


@contextlib.contextmanager
def process_group(
    *,
    backend: Literal["auto", "nccl", "gloo"] = "auto",
    init_method: str = "env://",
    rank: int | None = None,
    world_size: int | None = None,
    timeout_s: float = 600.0,
) -> Iterator[torch.device]:
    """Join the process group for the block and yield this rank's device; leave it afterwards.

    Under ``torchrun`` the defaults read ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the master address
    from the environment. ``backend="auto"`` picks NCCL when CUDA is present (each rank then uses GPU
    ``LOCAL_RANK``) and gloo otherwise. Without a launcher (no ``WORLD_SIZE`` in the environment and
    none given) the block runs as a single process and the helpers stay no-ops.

    Args:
        backend: ``"auto"``, ``"nccl"`` or ``"gloo"``.
        init_method: ``"env://"`` (torchrun), ``"tcp://host:port"`` or ``"file:///path"``.
        rank, world_size: explicit values for a non-``env://`` rendezvous (``torch.multiprocessing.spawn``).
        timeout_s: how long a collective waits for the other ranks before failing.
    """
    size = world_size if world_size is not None else int(os.environ.get("WORLD_SIZE", "1"))
    if backend not in ("auto", "nccl", "gloo"):
        raise ValueError(f"backend must be 'auto', 'nccl' or 'gloo', got {backend!r}")
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    local = int(os.environ.get("LOCAL_RANK", rank if rank is not None else 0))
    device = torch.device("cuda", local % torch.cuda.device_count()) if backend == "nccl" else torch.device("cpu")
    if size <= 1 or dist.is_initialized():
        yield device if backend == "nccl" else torch.device("cpu")
        return
    if backend == "nccl":
        torch.cuda.set_device(device)
    kwargs = {"rank": rank, "world_size": size} if init_method != "env://" else {}
    dist.init_process_group(backend, init_method=init_method, timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
    try:
        yield device
    finally:
        dist.destroy_process_group()
