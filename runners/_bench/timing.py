"""Wall-clock timing for the benchmarks: best of several runs (timing lives here and nowhere else)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import torch


def best_time(fn: Callable[[], object], repeats: int, device: torch.device, *, warmup: bool = True) -> float:
    """Shortest of ``repeats`` timed calls of ``fn``: the least disturbed by other load on the machine."""
    if warmup:
        fn()  # vmap's first call traces and the allocator fills its caches
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best
