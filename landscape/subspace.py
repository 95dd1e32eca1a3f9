"""Linear families of parameter perturbations: which directions a curvature or basin probe may move.

Every probe of the package (Hessian spectra, traces, densities, basin widths, ε-sharpness, loss
surfaces) looks at the loss :math:`u \\mapsto L(\\theta + P u)` for coordinates :math:`u \\in \\mathbb{R}^m`
and a linear map :math:`P`. Its Hessian at :math:`u = 0` is :math:`P^\\top H(\\theta) P`. Three maps
cover the questions of d'Ascoli et al. (2019):

* a subset of parameters by name (one layer): :math:`P` selects coordinates;
* a mask ``{name: bool tensor}`` (the local or off-local blocks of an eFCN's dense weights, from
  ``embeddings.local_masks``): :math:`P` scatters the free entries;
* any linear map of a structured coordinate dict, such as the embedding of a CNN's parameters into its
  eFCN (the CNN subspace, weight sharing included): then :math:`P = J`, the embedding's Jacobian, and
  the restricted Hessian of an eFCN at an embedded CNN is the CNN's own Hessian.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from landscape._checks import check_masks, check_parameter_names
from landscape._types import Params

__all__ = ["ParameterSubspace", "parameter_subspace"]

LinearMap = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


@dataclass(frozen=True, eq=False)
class ParameterSubspace:
    """Coordinates :math:`u` of the perturbations :math:`\\delta\\theta = P u` of a model's parameters.

    Attributes:
        reference: structured coordinates of the current point, ``{name: tensor}`` (the model's own
            parameters, or e.g. the CNN parameters a linear map embeds). They set the scale of
            filter-normalised directions and of ε-boxes.
        masks: free entries of each structured coordinate (``None``: all of them).
        linear_map: linear map from structured coordinates to parameter perturbations (``None``: the
            identity on the parameters named in ``reference``).
        moving: names of the model parameters that the perturbations touch.
        size: dimension :math:`m` of the coordinate space.
    """

    reference: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor] | None
    linear_map: LinearMap | None
    moving: tuple[str, ...]
    size: int

    def flatten(self, structured: Params) -> torch.Tensor:
        """Structured coordinates (free entries only) as one flat vector of length ``size``."""
        if self.masks is None:
            return torch.cat([structured[name].reshape(-1) for name in self.reference])
        return torch.cat([structured[name][self.masks[name]] for name in self.reference if name in self.masks])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """A flat coordinate vector as structured coordinates, zero outside the masks."""
        out, start = {}, 0
        for name, ref in self.reference.items():
            mask = None if self.masks is None else self.masks.get(name)
            if self.masks is not None and mask is None:
                continue
            count = ref.numel() if mask is None else int(mask.sum())
            chunk = flat[start : start + count]
            if mask is None:
                out[name] = chunk.reshape(ref.shape)
            else:
                out[name] = torch.zeros(ref.shape, dtype=flat.dtype, device=flat.device).masked_scatter(mask, chunk)
            start += count
        return out

    def lift(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """The parameter perturbation :math:`P u` of coordinates ``u``, as ``{name: tensor}`` over ``moving``."""
        structured = self.unflatten(flat)
        return structured if self.linear_map is None else self.linear_map(structured)

    def restrict(self, cotangent: Params) -> torch.Tensor:
        """The adjoint :math:`P^\\top g` of a parameter-space cotangent (e.g. a gradient), as a flat vector."""
        if self.linear_map is None:
            return self.flatten(cotangent)
        zeros = {name: torch.zeros_like(ref) for name, ref in self.reference.items()}
        # The map is linear, so its vector-Jacobian product at zero is its adjoint everywhere.
        _, pullback = torch.func.vjp(self.linear_map, zeros)
        (structured,) = pullback({name: cotangent[name] for name in self.moving})
        return self.flatten(structured)

    def coordinates(self) -> torch.Tensor:
        """The flat coordinates of ``reference`` (for ε-boxes :math:`|u_i| \\le \\epsilon (|c_i| + 1)`)."""
        return self.flatten(self.reference)


def trainable_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's trainable parameters, detached, by name."""
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}


def parameter_subspace(
    model: nn.Module,
    *,
    params: Sequence[str] | None = None,
    masks: Params | None = None,
    linear_map: LinearMap | None = None,
    coordinates: Params | None = None,
) -> ParameterSubspace:
    """The directions a probe of ``model`` may move along; at most one of the three restrictions.

    Args:
        model: the network whose loss is probed.
        params: names of the parameters that move (e.g. one layer's ``["features.0.weight"]``).
        masks: ``{name: bool tensor}`` of the parameters' shapes; True entries move (e.g.
            ``embeddings.local_masks(efcn)`` for the local blocks, their negation for the off-local ones).
        linear_map: a *linear* map from structured coordinates ``{name: tensor}`` to perturbations
            ``{param_name: tensor}`` of some of the model's parameters (e.g. the embedding of CNN
            parameters into the eFCN); ``coordinates`` then gives the structured point (e.g. the CNN's
            parameters), whose shapes define the coordinate space and whose values set scales.
        coordinates: only with ``linear_map``.

    Returns:
        The subspace; with no restriction, all trainable parameters.

    Example:
        >>> model = nn.Linear(3, 2)
        >>> parameter_subspace(model).size, parameter_subspace(model, params=["bias"]).size
        (8, 2)
        >>> parameter_subspace(model, masks={"weight": torch.eye(2, 3, dtype=torch.bool)}).size
        2
    """
    chosen = [option for option, value in (("params", params), ("masks", masks), ("linear_map", linear_map)) if value is not None]
    if len(chosen) > 1:
        raise ValueError(f"pass at most one of params, masks, linear_map; got {', '.join(chosen)}")
    if (linear_map is None) != (coordinates is None):
        raise ValueError("linear_map and coordinates go together: coordinates are the structured point the map embeds")
    theta = trainable_parameters(model)
    if linear_map is not None:
        reference = {name: c.detach().to(next(iter(theta.values()))) for name, c in coordinates.items()}
        with torch.no_grad():
            image = linear_map({name: torch.zeros_like(c) for name, c in reference.items()})
        moving = check_parameter_names(image, theta)
        for name in moving:
            if image[name].shape != theta[name].shape:
                raise ValueError(
                    f"linear_map gives {name!r} the shape {tuple(image[name].shape)}; the parameter has {tuple(theta[name].shape)}"
                )
        if any(bool(value.abs().max() > 0) for value in image.values()):
            raise ValueError("linear_map maps zero to a non-zero perturbation, so it is not linear; pass a linear map")
        size = sum(c.numel() for c in reference.values())
        return ParameterSubspace(reference, None, linear_map, moving, size)
    if masks is not None:
        masks = check_masks(dict(masks), theta)
        reference = {name: theta[name] for name in masks}
        return ParameterSubspace(reference, masks, None, tuple(masks), int(sum(int(m.sum()) for m in masks.values())))
    names = tuple(theta) if params is None else check_parameter_names(params, theta)
    reference = {name: theta[name] for name in names}
    return ParameterSubspace(reference, None, None, names, sum(theta[name].numel() for name in names))
