"""The forces on the elastic string's interior points and the integration of its spring (:mod:`landscape.string_method`).

:func:`descent_directions` turns the points' loss gradients into what the optimiser receives: the
gradients alone (the implicit spring, applied after the step by :func:`apply_spring` with the proximal
operator of :func:`spring_proximal`), the explicit spring's :math:`\\nabla E`, or the nudged elastic
band's forces (optionally with a climbing image). Every function works on stacked ``(P, *shape)``
parameters, one row per point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from landscape._types import Params

if TYPE_CHECKING:
    from landscape.string_method import StringConfig

__all__ = ["Spring", "spring_proximal", "descent_directions", "apply_spring"]

Spring = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""The implicit spring's proximal operator :math:`S` and its two endpoint weights."""


def _per_point(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast one value per point over a stacked ``(P, *shape)`` tensor."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def _norms(stacked: Params) -> torch.Tensor:
    """Euclidean norm of every point of a stacked dict, over all its parameters."""
    return torch.sqrt(sum(t.flatten(1).pow(2).sum(1) for t in stacked.values()))


def _explicit_spring(grads: Params, full: Params, stiffness: float) -> Params:
    """:math:`\\nabla L(\\theta_i) + k (2\\theta_i - \\theta_{i-1} - \\theta_{i+1})`."""
    return {n: g + stiffness * (2 * full[n][1:-1] - full[n][:-2] - full[n][2:]) for n, g in grads.items()}


def _neb_forces(grads: Params, full: Params, losses: torch.Tensor, stiffness: float, climbing: bool) -> Params:
    """Descent directions of the nudged elastic band (optionally with a climbing image)."""
    ahead = {n: t[2:] - t[1:-1] for n, t in full.items()}
    behind = {n: t[1:-1] - t[:-2] for n, t in full.items()}
    len_ahead, len_behind = _norms(ahead), _norms(behind)
    # Coinciding neighbours give a zero segment, which then contributes no direction (not a NaN).
    tiny = torch.finfo(len_ahead.dtype).tiny
    tangent = {
        n: ahead[n] / _per_point(len_ahead.clamp_min(tiny), ahead[n]) + behind[n] / _per_point(len_behind.clamp_min(tiny), behind[n])
        for n in full
    }
    scale = _norms(tangent).clamp_min(tiny)
    tangent = {n: t / _per_point(scale, t) for n, t in tangent.items()}
    along = sum((grads[n] * tangent[n]).flatten(1).sum(1) for n in grads)
    spring = stiffness * (len_ahead - len_behind)
    out = {n: g - _per_point(along, g) * tangent[n] - _per_point(spring, g) * tangent[n] for n, g in grads.items()}
    if climbing:
        top = int(losses.argmax())
        for n, g in grads.items():
            out[n][top] = g[top] - 2 * along[top] * tangent[n][top]
    return out


def spring_proximal(config: StringConfig, lr: float, count: int, dtype: torch.dtype, device: torch.device) -> Spring | None:
    """The implicit spring's :math:`S = (I + c A)^{-1}` and endpoint weights :math:`c S e_1`, :math:`c S e_P`,
    :math:`c = \\text{lr}\\, k` (float64 solve); ``None`` when the spring is explicit, NEB's or absent (k = 0)."""
    if not (config.forces == "elastic" and config.spring == "implicit" and config.stiffness > 0):
        return None
    step = lr * config.stiffness
    lap = 2 * torch.eye(count, dtype=torch.float64) - torch.diag(torch.ones(count - 1, dtype=torch.float64), 1)
    lap = lap - torch.diag(torch.ones(count - 1, dtype=torch.float64), -1)
    solve = torch.linalg.inv(torch.eye(count, dtype=torch.float64) + step * lap)
    cast = dict(dtype=dtype, device=device)
    return solve.to(**cast), (step * solve[:, 0]).to(**cast), (step * solve[:, -1]).to(**cast)


def descent_directions(grads: Params, full: Params, losses: torch.Tensor, config: StringConfig) -> Params:
    """What the optimiser receives as the points' gradients: NEB forces, the explicit spring's
    :math:`\\nabla E`, or (implicit spring, applied after the step) the loss gradients alone."""
    if config.forces == "neb":
        return _neb_forces(grads, full, losses, config.stiffness, config.climbing_image)
    if config.spring == "explicit":
        return _explicit_spring(grads, full, config.stiffness)
    return grads


def apply_spring(interior: Params, a: Params, b: Params, spring: Spring) -> None:
    """The implicit spring's proximal step in place: :math:`\\Theta \\leftarrow S \\Theta + c S e_1 \\theta_a + c S e_P \\theta_b`."""
    solve, weight_a, weight_b = spring
    with torch.no_grad():
        for name, leaf in interior.items():
            shape = (-1,) + (1,) * (leaf.dim() - 1)
            proximal = torch.tensordot(solve, leaf, dims=1) + weight_a.view(shape) * a[name] + weight_b.view(shape) * b[name]
            leaf.copy_(proximal)
