r"""Local / off-local blocks of eFCN weights and the distance from the CNN subspace.

In an eFCN weight, the *local* entries are those that copy some filter entry (inside a receptive field
and a channel group); all others are *off-local*, zero right after embedding. The paper measures
how far training escapes from the CNN subspace by

.. math:: \delta = \frac{\lVert \theta_{\text{off-local}} \rVert_2}{\lVert \theta \rVert_2},

over all parameters of the model, and evaluates networks with only one kind of block kept.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ._checks import KEEPS, check_choice
from .layers import EmbeddedDense

__all__ = ["local_masks", "offlocal_ratio", "mask_blocks"]

# Rows per chunk when summing off-local squares, so that AlexNet-sized eFCNs need no full-size temporary.
_CHUNK_ELEMENTS = 1 << 22


def _embedded_layers(model: nn.Module) -> list[tuple[str, EmbeddedDense]]:
    return [(name, module) for name, module in model.named_modules() if isinstance(module, EmbeddedDense)]


def local_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Boolean masks (True = local entry) of the weights of every eFCN layer, keyed by parameter name."""
    return {f"{name}.weight" if name else "weight": layer.local_mask() for name, layer in _embedded_layers(model)}


def _offlocal_squares(layer: EmbeddedDense) -> torch.Tensor:
    mask = layer.local_mask()
    weight = layer.weight.detach()
    rows = max(1, _CHUNK_ELEMENTS // max(1, weight.shape[1]))
    total = torch.zeros((), dtype=torch.float64, device=weight.device)
    for start in range(0, weight.shape[0], rows):
        chunk = weight[start:start + rows].masked_fill(mask[start:start + rows], 0)
        total += chunk.double().square().sum()
    return total


def offlocal_ratio(model: nn.Module) -> float:
    r"""The paper's :math:`\delta`: norm of the off-local weights over the norm of all parameters.

    It is 0 for a CNN, an eLCN and a freshly embedded eFCN, and close to 1 for a random FCN.

    Example:
        >>> from embeddings import to_efcn
        >>> cnn = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten())
        >>> efcn = to_efcn(cnn, (1, 8))
        >>> offlocal_ratio(efcn)
        0.0
        >>> with torch.no_grad():
        ...     _ = efcn[0].weight.fill_(1.0), efcn[0].bias.zero_()
        >>> round(offlocal_ratio(efcn) ** 2, 4)  # 5 of the 8 entries of each row are off-local
        0.625
    """
    parameters = list(model.parameters())
    if not parameters:
        raise ValueError("offlocal_ratio needs a model with parameters")
    total = sum(p.detach().double().square().sum() for p in parameters)
    if total == 0:
        return 0.0
    off = sum((_offlocal_squares(layer) for _, layer in _embedded_layers(model)), torch.zeros((), dtype=torch.float64))
    return float(torch.sqrt(off.cpu() / total.cpu()))


def mask_blocks(model: nn.Module, keep: str) -> nn.Module:
    """A copy of an eFCN with only its ``"local"`` or only its ``"offlocal"`` weights kept.

    Biases and layers that are not eFCN layers are kept as they are: this is the paper's "local
    blocks only" / "off-local blocks only" evaluation of which part of the network does the work.
    """
    check_choice(keep, KEEPS, "keep")
    if not _embedded_layers(model):
        raise ValueError("mask_blocks needs an eFCN (a model with EmbeddedDense layers); embed it with to_efcn first")
    masked = copy.deepcopy(model)
    with torch.no_grad():
        for _, layer in _embedded_layers(masked):
            mask = layer.local_mask()
            layer.weight.masked_fill_(~mask if keep == "local" else mask, 0)
    return masked
