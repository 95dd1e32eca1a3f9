"""The elastic string's default step, from the curvature of its endpoints (``StringConfig(lr="auto")``).

Gradient descent on a loss whose Hessian has largest eigenvalue :math:`\\lambda_{\\max}` is stable for
:math:`\\text{lr} < 2 / \\lambda_{\\max}`; beyond it the points are thrown out of the valley and the
string's losses rise (the paper's lr 0.1 did that between Adam-trained minima, whose
:math:`\\lambda_{\\max}` is in the tens). The rule here is

.. math::
    \\text{lr} = \\frac{c}{\\max(\\lambda_{\\max}(\\theta_a), \\lambda_{\\max}(\\theta_b)) + s},
    \\qquad c = 1,

with :math:`s = 4k` when the spring enters the gradient (``spring="explicit"`` or ``forces="neb"``: the
spring adds :math:`k\\,\\mathrm{tridiag}(-1, 2, -1)`, whose eigenvalues lie below 4k, to the energy's
Hessian) and :math:`s = 0` for the implicit spring, which is stable for every step. :math:`c = 1` is half
the stability limit because (i) Lanczos' Ritz value approaches :math:`\\lambda_{\\max}` from below, and with
a small budget may fall short of it; (ii) the interior points start on the linear path, where the loss
and often the curvature are higher than at the minima; (iii) mini-batch gradients add noise that a step at
the edge of stability amplifies. At :math:`c = 1` the step is Newton's along the sharpest direction (it
lands on that direction's minimum in one step) and the flatter directions move more slowly, which is
what the string needs: to relax, not to race.

:math:`\\lambda_{\\max}` comes from plain top-1 Lanczos (:func:`landscape.lanczos`, three vectors) on the
first :data:`CURVATURE_BATCHES` training mini-batches with at most :data:`CURVATURE_PRODUCTS` products per
endpoint, with the string's own function (eval mode, BatchNorm on each batch's statistics); the
mini-batch Hessian's top eigenvalue is no smaller on average than the full-data one, which errs on the
safe side.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from landscape._types import Batches, LossFn, Params
from landscape.hessian import HessianOperator
from landscape.lanczos import lanczos

__all__ = ["AUTO_LR_SCALE", "CURVATURE_BATCHES", "CURVATURE_PRODUCTS", "CurvatureStep", "curvature_step"]

AUTO_LR_SCALE = 1.0
""":math:`c` of ``lr = c / lambda_max``: half the stability limit 2 (why: the module docstring)."""

CURVATURE_BATCHES = 2
"""Training mini-batches the endpoints' curvature is measured on (the string steps on one at a time)."""

CURVATURE_PRODUCTS = 20
"""Most Hessian-vector products per endpoint: top-1 Lanczos converges to 1% in about ten on networks."""


@dataclass(frozen=True)
class CurvatureStep:
    """The step chosen from the curvature and what it was chosen from.

    Attributes:
        lr: the step, :data:`AUTO_LR_SCALE` over the largest curvature (plus the spring's :math:`4k` when explicit).
        lambda_max: top Hessian eigenvalue of the loss at endpoint a and at endpoint b.
    """

    lr: float
    lambda_max: tuple[float, float]


def _top_eigenvalue(shell: nn.Module, loss_fn: LossFn, batches: Batches, params: Params, seed: int) -> float:
    """:math:`\\lambda_{\\max}` of the mini-batches' average loss at ``params``, by top-1 Lanczos."""
    model = copy.deepcopy(shell)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.copy_(params[name])
    operator = HessianOperator(model, loss_fn, batches)
    return float(lanczos(operator, k=1, tol=1e-2, max_iter=min(operator.size, CURVATURE_PRODUCTS), seed=seed).eigenvalues[0])


def curvature_step(shell: nn.Module, loss_fn: LossFn, batches: Batches, *, params_a: Params, params_b: Params,
                   spring_stiffness: float, seed: int) -> CurvatureStep:
    """``lr = AUTO_LR_SCALE / (max(lambda_max(a), lambda_max(b)) + spring_stiffness * 4)``.

    Args:
        shell: the string's functional copy of the model (eval mode; parameters are overwritten in a copy).
        loss_fn: the mean-reduced loss.
        batches: the training mini-batches; the first :data:`CURVATURE_BATCHES` are used.
        params_a, params_b: the endpoints.
        spring_stiffness: :math:`k` when the spring enters the gradient (explicit or NEB), else 0.
        seed: Lanczos' starting vector.

    Raises:
        ValueError: (one line) when neither endpoint has positive curvature, which gives no step.

    Example:
        :math:`L(w) = \\frac{1}{2}(w_1^2 + 4 w_2^2)` has :math:`\\lambda_{\\max} = 4` everywhere:

        >>> X = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
        >>> shell = nn.Linear(2, 1, bias=False).double().eval()
        >>> a, b = {"weight": torch.zeros(1, 2, dtype=torch.float64)}, {"weight": torch.ones(1, 2, dtype=torch.float64)}
        >>> step = curvature_step(shell, nn.MSELoss(), [(X, torch.zeros(2, 1, dtype=torch.float64))], params_a=a, params_b=b,
        ...                       spring_stiffness=0.0, seed=0)
        >>> round(step.lr, 12), [round(v, 9) for v in step.lambda_max]
        (0.25, [4.0, 4.0])
    """
    measured = list(batches)[:CURVATURE_BATCHES]
    values = tuple(_top_eigenvalue(shell, loss_fn, measured, params, seed) for params in (params_a, params_b))
    top = max(values)
    if not math.isfinite(top) or top <= 0:
        raise ValueError(f"the endpoints' largest Hessian eigenvalues are {values[0]:.3g} and {values[1]:.3g}, so their curvature "
                         "gives no step size; pass StringConfig(lr=...) a number (CLI: --string-lr)")
    return CurvatureStep(lr=AUTO_LR_SCALE / (top + 4 * spring_stiffness), lambda_max=values)
