"""Wall-clock timing for the benchmarks: best of several runs (timing lives here and nowhere else)."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable

import torch


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn: Callable[[], object], repeats: int, device: torch.device, *, warmup: bool = True) -> float:
    """Shortest of ``repeats`` timed calls of ``fn``: the least disturbed by other load on the machine."""
    return interleaved_best({"fn": fn}, repeats, device, warmup=warmup)["fn"]


def interleaved_best(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device, *,
                     warmup: bool = True) -> dict[str, float]:
    """Shortest time of each function over ``repeats`` rounds in which the functions take turns.

    Taking turns spreads a burst of load from other processes over all of them alike, so their ratios
    stay meaningful on a shared machine where absolute times do not.
    """
    if warmup:
        for fn in fns.values():
            fn()  # vmap's first call traces and the allocator fills its caches
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            gc.collect()
            _synchronize(device)
            start = time.perf_counter()
            fn()
            _synchronize(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def load_average() -> list[float]:
    """The machine's 1, 5 and 15-minute load averages (what else was running while we timed)."""
    return [round(value, 2) for value in os.getloadavg()]
