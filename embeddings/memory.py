"""Parameter memory of a relaxed model, computed before building it, and the budget that guards it.

The paper's AlexNet grows from 10 MB to about 1 GB when embedded into eFCN space (with the padded
positions that this toolkit folds away, about half of that): ask first, then build.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
from torch import nn

from ._checks import TARGETS, check_choice, resolve_input_shape
from ._tracing import RelaxableLayer, find_relaxable_layers, layer_geometry
from .layers import EmbeddedDense

__all__ = ["estimate_memory", "MemoryBudgetError", "default_max_bytes"]

# Half of what is free: the model's gradients, optimiser state and activations need the rest.
BUDGET_FRACTION = 0.5


class MemoryBudgetError(MemoryError):
    """Raised instead of building a relaxed model that would not fit the memory budget."""


def _relaxed_numel(layer: RelaxableLayer, target: str) -> int:
    g = layer_geometry(layer)
    has_bias = layer.module.bias is not None
    bias = g.out_channels * g.out_positions if has_bias else 0
    if target == "efcn" or isinstance(layer.module, EmbeddedDense):
        return math.prod(g.dense_shape) + bias
    return math.prod(g.local_shape) + bias


def _parameter_bytes(model: nn.Module, layers: Sequence[RelaxableLayer], target: str) -> int:
    relaxed_ids = {id(p) for layer in layers for p in layer.module.parameters()}
    kept = sum(p.numel() * p.element_size() for p in model.parameters() if id(p) not in relaxed_ids)
    relaxed = sum(_relaxed_numel(layer, target) * layer.module.weight.element_size() for layer in layers)
    return kept + relaxed


def estimate_memory(model: nn.Module, input_shape: Sequence[int] | None = None, target: str = "efcn") -> int:
    """Bytes of parameters of ``to_efcn(model)`` or ``to_elcn(model)``, computed without building it.

    Shapes come from a forward pass on meta tensors, so nothing of the result's size is allocated.

    Example:
        >>> cnn = nn.Sequential(nn.Conv2d(1, 1, 3, bias=False))
        >>> estimate_memory(cnn, (1, 4, 4), "efcn")  # a (4, 16) float32 matrix
        256
    """
    check_choice(target, TARGETS, "target")
    input_shape = resolve_input_shape(model, input_shape)
    return _parameter_bytes(model, find_relaxable_layers(model, input_shape), target)


def _free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def default_max_bytes(device: torch.device | str = "cpu") -> int:
    """The default budget: half of the memory free now on ``device``."""
    return int(BUDGET_FRACTION * _free_bytes(torch.device(device)))


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB"


def check_budget(model: nn.Module, layers: Sequence[RelaxableLayer], target: str, max_bytes: int | None, device) -> None:
    """Raise :class:`MemoryBudgetError` before building a relaxed model larger than ``max_bytes``."""
    needed = _parameter_bytes(model, layers, target)
    if max_bytes is None:
        first = next(model.parameters(), None)
        where = torch.device(device) if device is not None else (first.device if first is not None else torch.device("cpu"))
        max_bytes, origin = default_max_bytes(where), f"the default: half of the free memory on {where}"
    else:
        origin = "max_bytes"
    if needed > max_bytes:
        other = "elcn" if target == "efcn" else "efcn"
        other_bytes = _parameter_bytes(model, layers, other) if not any(
            isinstance(layer.module, EmbeddedDense) for layer in layers) else None
        alternative = f"; an {other} would need {_gib(other_bytes)}" if other_bytes is not None else ""
        raise MemoryBudgetError(
            f"the {target} of this model needs {_gib(needed)} of parameters ({needed:,} bytes), more than the budget of "
            f"{_gib(max_bytes)} ({origin}){alternative}. Pass max_bytes={needed} or more (CLI: --max-bytes) to build it anyway"
        )
