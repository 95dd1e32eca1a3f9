"""How wide is the basin: filter-normalised directions, basin width, ε-sharpness, loss surfaces.

* **Filter-normalised directions** (Li, Xu, Taylor, Studer & Goldstein 2018, "Visualizing the loss
  landscape of neural nets"): a Gaussian direction :math:`d` whose every filter (slice along the output
  dimension of a weight) is rescaled to the norm of the same filter of the parameters,
  :math:`d_f \\leftarrow d_f \\|\\theta_f\\| / \\|d_f\\|`, so that distances along it are relative to the
  network's own scale and comparable across networks; biases are left at zero, as in Li et al.
* **Basin width**: along :math:`\\pm d`, the first distance :math:`t` at which the loss
  :math:`L(\\theta + t d)` has risen by a threshold above :math:`L(\\theta)` (absolute, or relative to
  :math:`L(\\theta)`), bracketed on a grid then bisected; averaged over directions and signs.
* **ε-sharpness** (Keskar, Mudigere, Nocedal, Smelyanskiy & Tang 2017): with the box
  :math:`C_\\epsilon = \\{y : |y_i| \\le \\epsilon (|\\theta_i| + 1)\\}`,
  :math:`\\phi = 100 \\, (\\max_{y \\in C_\\epsilon} L(\\theta + y) - L(\\theta)) / (1 + L(\\theta))`, the max
  found by projected (sign-)gradient ascent from a random point of the box.

All probes run in the coordinates of a :class:`landscape.ParameterSubspace`: the whole network, one
layer, the local or off-local blocks of an eFCN, or its CNN subspace. Loss surfaces are in
:mod:`landscape.surface`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from landscape._checks import NonFiniteError, check_finite_result, check_finite_tensors, check_positive_float, check_positive_int
from landscape._objective import Objective
from landscape._types import Batches, LossFn
from landscape.subspace import ParameterSubspace, parameter_subspace

__all__ = ["filter_normalized_direction", "BasinWidth", "basin_width", "EpsilonSharpness", "epsilon_sharpness"]


def filter_normalized_direction(subspace: ParameterSubspace, *, seed: int = 0, ignore_biases: bool = True) -> torch.Tensor:
    """A random filter-normalised direction in the coordinates of ``subspace`` (Li et al. 2018).

    Each structured coordinate of ``subspace.reference`` with at least 2 dimensions is a stack of filters
    along dim 0; the Gaussian direction restricted to the subspace's mask is rescaled filter by filter to
    the norm of the reference filter (the whole filter's, so that a masked block moves on the scale of
    its layer). One-dimensional coordinates (biases, norm scales) stay zero unless ``ignore_biases``
    is False, when each is normalised as one filter. The Gaussian draw comes from a generator seeded
    with ``seed``; :func:`basin_width` and :func:`~landscape.loss_surface` take their directions as the
    successive draws of one such generator, the first of which is this function's.

    Example:
        >>> sub = parameter_subspace(nn.Linear(3, 2))
        >>> d = sub.unflatten(filter_normalized_direction(sub, seed=0))
        >>> torch.allclose(d["weight"].norm(dim=1), sub.reference["weight"].norm(dim=1)), d["bias"].tolist()
        (True, [0.0, 0.0])
    """
    return _filter_normalized_direction(subspace, torch.Generator().manual_seed(seed), ignore_biases=ignore_biases)


def _filter_normalized_direction(subspace: ParameterSubspace, generator: torch.Generator, *, ignore_biases: bool = True) -> torch.Tensor:
    """:func:`filter_normalized_direction` drawn from ``generator`` (the next of a sequence of directions)."""
    # A NaN filter norm makes every direction NaN, which the zero test below would blame on all-zero filters.
    check_finite_tensors(subspace.reference)
    structured = {}
    for name, ref in subspace.reference.items():
        mask = None if subspace.masks is None else subspace.masks.get(name)
        if subspace.masks is not None and mask is None:
            continue
        if ref.dim() < 2 and ignore_biases:
            structured[name] = torch.zeros_like(ref)
            continue
        direction = torch.randn(ref.shape, generator=generator, dtype=torch.float64).to(ref)
        if mask is not None:
            direction = direction * mask
        filters = (len(ref), -1) if ref.dim() > 1 else (1, -1)
        rows, ref_rows = direction.reshape(filters), ref.reshape(filters)
        scale = ref_rows.norm(dim=1, keepdim=True) / rows.norm(dim=1, keepdim=True).clamp_min(torch.finfo(ref.dtype).tiny)
        structured[name] = (rows * scale).reshape(ref.shape)
    flat = subspace.flatten(structured)
    if not bool(flat.abs().max() > 0):
        raise ValueError(
            "every filter-normalised direction in this subspace is zero (only biases, or all-zero filters); "
            "pass ignore_biases=False or a subspace that contains weights"
        )
    return flat


@dataclass(frozen=True)
class BasinWidth:
    """Distances along filter-normalised rays at which the loss first rises by ``threshold``.

    Attributes:
        widths: ``(num_directions, 2)`` distance along :math:`+d` and :math:`-d` for each direction.
        censored: ``(num_directions, 2)`` True where the loss never rose enough within ``max_distance``
            (the width is then reported as ``max_distance``, a lower bound).
        mean: mean of ``widths``; std: their standard deviation (the spread over directions).
        base_loss: :math:`L(\\theta)`; rise: the loss rise that defines the edge.
    """

    widths: torch.Tensor
    censored: torch.Tensor
    mean: float
    std: float
    base_loss: float
    rise: float


def basin_width(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Batches,
    *,
    threshold: float = 0.1,
    mode: Literal["absolute", "relative"] = "absolute",
    num_directions: int = 10,
    max_distance: float = 1.0,
    grid_points: int = 21,
    bisection_steps: int = 12,
    subspace: ParameterSubspace | None = None,
    seed: int = 0,
) -> BasinWidth:
    """Basin width along random filter-normalised directions, averaged over directions, with spread.

    Args:
        threshold: the loss rise marking the basin's edge: in loss units (``mode="absolute"``; the
            default, since a trained net's loss near 0 makes relative rises explode) or as a fraction of
            :math:`L(\\theta)` (``mode="relative"``).
        num_directions: directions :math:`d_j`, the j-th draws of :func:`filter_normalized_direction` from
            a generator seeded with ``seed``; both :math:`\\pm d_j` are measured.
        max_distance: the longest distance probed (in units of the filter norms).
        grid_points: grid points on :math:`[0, \\mathrm{max\\_distance}]` to bracket the first crossing.
        bisection_steps: bisections of the bracket (precision ``max_distance / (grid_points - 1) / 2**steps``).
        subspace: directions to restrict to (default: all parameters).

    Example:
        Least squares at its minimum is the bowl :math:`t^2 d^\\top H d / 2` along any ray:

        >>> X = torch.eye(2, dtype=torch.float64)
        >>> model = nn.Linear(2, 1, bias=False).double()
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.tensor([[3.0, 4.0]]))
        >>> y = X @ model.weight.detach().T
        >>> result = basin_width(model, nn.MSELoss(), [(X, y)], threshold=1.0, num_directions=1)
        >>> [round(w, 4) for w in result.widths[0].tolist()]  # |d| = 5, H = I: 25 t^2 / 2 = 1 at t = 0.2828
        [0.2828, 0.2828]
    """
    check_positive_float("threshold", threshold)
    check_positive_float("max_distance", max_distance)
    check_positive_int("num_directions", num_directions)
    check_positive_int("bisection_steps", bisection_steps)
    if isinstance(grid_points, bool) or not isinstance(grid_points, int) or grid_points < 2:
        raise ValueError(f"grid_points must be an int >= 2 (the grid includes 0 and max_distance), got {grid_points!r}")
    if mode not in ("absolute", "relative"):
        raise ValueError(f"mode must be 'absolute' or 'relative', got {mode!r}")
    subspace = parameter_subspace(model) if subspace is None else subspace
    objective = Objective(model, loss_fn, batches, moving=subspace.moving)
    # θ + t P(±d) for 40-odd distances per ray: P(±d) is lifted once per ray and each distance writes
    # t P(±d) + θ into buffers allocated once (a fresh parameter-sized tensor per call cost a ResNet-18
    # more than its forward passes). The same numbers as θ + P(t d): scaling commutes with the lift's
    # reshapes, masks and copies (with a map that sums entries, they agree up to rounding).
    buffers = {name: torch.empty_like(p) for name, p in objective.point.items()}

    def loss_at(step: dict[str, torch.Tensor], t: float) -> float:
        moving = dict(objective.point)
        for name, change in step.items():
            moving[name] = torch.mul(change, t, out=buffers[name]).add_(objective.point[name])
        loss = objective.loss(moving)
        if math.isnan(loss):  # NaN compares False with the threshold: it would count as inside the basin
            raise NonFiniteError(f"the loss at distance {t:g} along a basin ray is NaN; lower max_distance (now {max_distance:g})")
        return loss  # +inf is a loss that rose past any threshold, a finite answer

    base = check_finite_result("the loss at the model's parameters", objective.loss())
    rise = threshold if mode == "absolute" else threshold * base
    generator = torch.Generator().manual_seed(seed)
    grid = torch.linspace(0.0, max_distance, grid_points).tolist()
    widths = torch.full((num_directions, 2), max_distance, dtype=torch.float64)
    censored = torch.ones((num_directions, 2), dtype=torch.bool)
    for j in range(num_directions):
        direction = _filter_normalized_direction(subspace, generator)
        for side, sign in enumerate((1.0, -1.0)):
            ray = subspace.lift(sign * direction)
            inside = 0.0
            for t in grid[1:]:
                if loss_at(ray, t) - base >= rise:
                    outside = t
                    for _ in range(bisection_steps):
                        middle = 0.5 * (inside + outside)
                        inside, outside = (inside, middle) if loss_at(ray, middle) - base >= rise else (middle, outside)
                    widths[j, side] = 0.5 * (inside + outside)
                    censored[j, side] = False
                    break
                inside = t
    return BasinWidth(widths, censored, float(widths.mean()), float(widths.std()) if widths.numel() > 1 else 0.0, base, rise)


@dataclass(frozen=True)
class EpsilonSharpness:
    """Keskar et al.'s ε-sharpness and the ascent that found it.

    Attributes:
        sharpness: :math:`100 (L_{\\max} - L(\\theta)) / (1 + L(\\theta))`.
        max_loss: the largest loss found in the box; base_loss: :math:`L(\\theta)`.
        epsilon: the box's relative size.
        losses: ``(steps + 1,)`` loss after each ascent step (the first at the random start).
    """

    sharpness: float
    max_loss: float
    base_loss: float
    epsilon: float
    losses: torch.Tensor


def epsilon_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Batches,
    *,
    epsilon: float = 1e-3,
    steps: int = 20,
    subspace: ParameterSubspace | None = None,
    seed: int = 0,
) -> EpsilonSharpness:
    """ε-sharpness by projected sign-gradient ascent in the box :math:`|y_i| \\le \\epsilon(|c_i| + 1)`.

    ``c`` are the subspace's coordinates (the parameters themselves without restriction). Each step moves
    every coordinate by 2.5 / ``steps`` of its half-width along the sign of the gradient and clips back
    into the box (the schedule of Madry et al. 2018, which lets a coordinate cross the box); the result is
    the largest loss met. Keskar et al. use ε = 1e-3 and 5e-4 and L-BFGS-B; for a convex quadratic the
    maximum sits at a corner, which sign steps reach exactly.

    Example:
        >>> X = torch.eye(2, dtype=torch.float64)
        >>> model = nn.Linear(2, 1, bias=False).double()
        >>> with torch.no_grad():
        ...     _ = model.weight.zero_()
        >>> result = epsilon_sharpness(model, nn.MSELoss(), [(X, torch.zeros(2, 1, dtype=torch.float64))], epsilon=0.1)
        >>> round(result.max_loss, 12)  # corner y = (0.1, 0.1): (0.01 + 0.01) / 2
        0.01
    """
    check_positive_float("epsilon", epsilon)
    check_positive_int("steps", steps)
    subspace = parameter_subspace(model) if subspace is None else subspace
    objective = Objective(model, loss_fn, batches, moving=subspace.moving)
    half_width = epsilon * (subspace.coordinates().abs() + 1.0)
    generator = torch.Generator().manual_seed(seed)
    y = (2.0 * torch.rand(subspace.size, generator=generator, dtype=torch.float64) - 1.0).to(half_width) * half_width

    def loss_at(y: torch.Tensor) -> float:
        return check_finite_result(f"the loss in the epsilon={epsilon:g} box", objective.loss(objective.at(subspace.lift(y))))

    base = check_finite_result("the loss at the model's parameters", objective.loss())
    losses = [loss_at(y)]
    for _ in range(steps):
        gradient = subspace.restrict(objective.gradient(objective.at(subspace.lift(y))))
        y = torch.clamp(y + (2.5 / steps) * half_width * gradient.sign(), -half_width, half_width)
        losses.append(loss_at(y))
    top = max(losses)
    return EpsilonSharpness(100.0 * (top - base) / (1.0 + base), top, base, epsilon, torch.tensor(losses, dtype=torch.float64))
