"""1-D and 2-D loss surfaces along filter-normalised directions (Li et al. 2018).

:math:`f(a) = L(\\theta + a d_1)` on a line, or :math:`f(a, b) = L(\\theta + a d_1 + b d_2)` on a square,
with :math:`d_1, d_2` independent draws of :func:`landscape.basin.filter_normalized_direction` (nearly
orthogonal in high dimension, as Li et al. argue), in the coordinates of any
:class:`landscape.ParameterSubspace`; loss and accuracy as :func:`landscape.evaluate` gives them, the
batches sharded once (by the probe's objective) under ``torch.distributed``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from landscape._checks import check_positive_float
from landscape._objective import Objective
from landscape._progress import track
from landscape._types import Batches, LossFn
from landscape.basin import _filter_normalized_direction
from landscape.subspace import ParameterSubspace, parameter_subspace

__all__ = ["LossSurface", "loss_surface"]


@dataclass(frozen=True)
class LossSurface:
    """Loss and accuracy on a grid of displacements.

    Attributes:
        axes: one ``(grid_points,)`` coordinate axis per direction.
        loss: ``(grid_points,)`` or ``(grid_points, grid_points)``, indexed ``[a]`` or ``[a, b]``.
        accuracy: same shape as ``loss``.
    """

    axes: tuple[torch.Tensor, ...]
    loss: torch.Tensor
    accuracy: torch.Tensor


def loss_surface(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Batches,
    *,
    dims: Literal[1, 2] = 1,
    span: float = 1.0,
    grid_points: int = 25,
    subspace: ParameterSubspace | None = None,
    seed: int = 0,
    on_point: Callable[[], None] | None = None,
    progress: bool = False,
) -> LossSurface:
    """The loss surface on :math:`[-\\mathrm{span}, \\mathrm{span}]^{\\mathrm{dims}}` around the model.

    Args:
        dims: 1 for a line, 2 for a square grid.
        span: half-width of the grid, in units of the filter norms.
        grid_points: grid points per axis (an odd count puts the model itself on the grid).
        subspace: directions to restrict to (default: all parameters).
        seed: seed of the directions.
        on_point: called after each grid point.
        progress: show progress over the grid (a bar on a terminal, else a line every ~30 s: :mod:`landscape._progress`).

    Example:
        >>> model = nn.Linear(2, 2)
        >>> batches = [(torch.randn(8, 2, generator=torch.Generator().manual_seed(0)), torch.zeros(8, dtype=torch.long))]
        >>> from landscape.evaluation import evaluate
        >>> surface = loss_surface(model, nn.CrossEntropyLoss(), batches, dims=2, grid_points=3)
        >>> tuple(surface.loss.shape), round(float(surface.loss[1, 1]), 6) == round(evaluate(model, None, batches).loss, 6)
        ((3, 3), True)
    """
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 (a line) or 2 (a square grid), got {dims!r}")
    check_positive_float("span", span)
    if isinstance(grid_points, bool) or not isinstance(grid_points, int) or grid_points < 2:
        raise ValueError(f"grid_points must be an int >= 2 per axis, got {grid_points!r}")
    subspace = parameter_subspace(model) if subspace is None else subspace
    objective = Objective(model, loss_fn, batches, moving=subspace.moving)
    generator = torch.Generator().manual_seed(seed)
    directions = [_filter_normalized_direction(subspace, generator) for _ in range(dims)]
    axis = torch.linspace(-span, span, grid_points, dtype=torch.float64)
    loss = torch.empty((grid_points,) * dims, dtype=torch.float64)
    accuracy = torch.empty_like(loss)
    grid = itertools.product(range(grid_points), repeat=dims)
    for index in track(grid, desc="surface", enabled=progress, total=grid_points**dims):
        step = sum(float(axis[i]) * d for i, d in zip(index, directions))
        result = objective.evaluate(objective.at(subspace.lift(step)))
        loss[index], accuracy[index] = result.loss, result.accuracy
        if on_point is not None:
            on_point()
    return LossSurface(axes=(axis,) * dims, loss=loss, accuracy=accuracy)
