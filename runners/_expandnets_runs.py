"""Pieces of ``runners.expandnets``: run names, the "product L2" penalty, norms, landscape probes.

The product L2 of ExpandNets (Fig. 7) penalises the compressed parameters,
:math:`\\frac{\\lambda}{2}\\sum_c\\lVert\\theta_c(\\theta)\\rVert^2`, a function of the whole chain.
The shared training loop minimises cross-entropy plus the optimizer's own weight decay only, so the
penalty enters through the model: :func:`penalised` wraps the net so that its logits carry the
penalty's gradient -- forward returns the logits untouched, backward adds
:math:`\\nabla_\\theta P` to whatever gradient reaches the logits. One loss, one backward: each step
then follows :math:`\\nabla(\\ell + P)`, exactly as if ``P`` had been added to the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from embeddings import compressed_parameters, expanded_layers, product_l2
from landscape import LossSurface, hessian_eigenvalues, loss_surface


@dataclass(frozen=True)
class RunSpec:
    """One trained net: ``mode`` (compact or an expansion), weight-decay kind and seed."""

    mode: str
    l2: str
    seed: int

    @property
    def name(self) -> str:
        """Group and folder name, e.g. ``ck+fc_seed0`` or ``cl_productl2_seed1``."""
        return f"{self.mode}{'_productl2' if self.l2 == 'product' else ''}_seed{self.seed}"


class _AttachGradient(torch.autograd.Function):
    """Identity on ``output``; backward also sends gradient 1 to ``penalty`` (as if added to the loss)."""

    @staticmethod
    def forward(ctx, output: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
        ctx.penalty_like = (penalty.dtype, penalty.device)
        return output.clone()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dtype, device = ctx.penalty_like
        return grad_output, torch.ones((), dtype=dtype, device=device)


class ProductL2(nn.Module):
    """``net`` whose backward pass adds the gradient of ``coefficient / 2 * product_l2(net)``.

    Only where gradients are recorded (training steps); evaluation under ``no_grad`` is the bare net.
    Its parameters are ``net``'s (names prefixed ``net.``), so an optimizer over it trains ``net``.
    """

    def __init__(self, net: nn.Module, coefficient: float) -> None:
        super().__init__()
        self.net = net
        self.coefficient = float(coefficient)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if not torch.is_grad_enabled():
            return out
        return _AttachGradient.apply(out, 0.5 * self.coefficient * product_l2(self.net))


def penalised(net: nn.Module, coefficient: float) -> ProductL2:
    """Wrap an expanded net for training with product L2 of strength ``coefficient`` (lambda)."""
    if not expanded_layers(net):
        raise ValueError("product L2 needs an expanded net (embeddings.expand); a compact net's product is its own L2")
    return ProductL2(net, coefficient)


@torch.no_grad()
def squared_norms(net: nn.Module) -> tuple[float, float]:
    """``(sum ||theta||^2, sum ||theta_c||^2)`` over the trained and the compressed parameters."""
    trained = float(sum(p.pow(2).sum() for p in net.parameters()))
    if not expanded_layers(net):
        return trained, trained
    return trained, float(sum(p.pow(2).sum() for p in compressed_parameters(net).values()))


def landscape_probes(compact: nn.Module, batches, *, points: int, seed: int) -> tuple[float, LossSurface]:
    """Top Hessian eigenvalue and 1-D loss surface (filter-normalised direction, span 1) of a compact
    or compressed net in eval mode: the paper's flatter-minimum comparison (Figs. 3-4)."""
    compact.eval()
    loss_fn = nn.CrossEntropyLoss()
    top = float(hessian_eigenvalues(compact, loss_fn, batches, k=1, seed=seed)[0])
    return top, loss_surface(compact, loss_fn, batches, dims=1, span=1.0, num_points=points, seed=seed)
