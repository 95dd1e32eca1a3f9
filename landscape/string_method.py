"""Elastic string between two minima, as in d'Ascoli et al. (2019), Sec. 3 ("string" interpolation).

The string is a chain of :math:`M` points :math:`\\theta_0, \\dots, \\theta_{M-1}` started on the linear
path, :math:`\\theta_i = \\theta_a + \\tfrac{i}{M-1} (\\theta_b - \\theta_a)`, with both endpoints fixed.
The interior points descend the energy

.. math::
    E(\\theta_1, \\dots, \\theta_{M-2}) = \\sum_{i=1}^{M-2} L(\\theta_i)
        + \\frac{k}{2} \\sum_{i=0}^{M-2} \\lVert \\theta_{i+1} - \\theta_i \\rVert^2 ,

:math:`L` the training loss on mini-batches and :math:`k` the stiffness: :math:`k \\to \\infty`
recovers the linear path, :math:`k = 0` lets every point fall down independently. As in the paper there
is no "nudging" (the projections of Sheppard et al. 2008 used by Draxler et al. 2018): the interior
points follow the plain gradient of :math:`E` (``forces="elastic"``).

Two integrations of the elastic term are offered. ``spring="explicit"`` hands :math:`\\nabla E` to the
optimiser as it is; it is stable only for :math:`\\text{lr} \\cdot k < 1/2`. ``spring="implicit"``
(default) takes the optimiser's step on :math:`L` and then the exact proximal step of the elastic term,
:math:`\\Theta \\leftarrow (I + \\text{lr}\\, k\\, A)^{-1} (\\Theta + \\text{lr}\\, k\\, \\beta)`, with
:math:`A = \\mathrm{tridiag}(-1, 2, -1)` over the interior points and :math:`\\beta` carrying the fixed
endpoints: forward-backward splitting of the same gradient flow, with the same stationary points,
stable for every :math:`k`, and exactly the linear path in the limit :math:`k \\to \\infty`.

Beyond the paper, ``forces="neb"`` gives the nudged elastic band (Jónsson, Mills & Jacobsen 1998):
the loss gradient loses its component along the tangent :math:`\\tau_i` (bisection of the two
neighbouring segments) and the spring acts only along it,
:math:`k(\\lVert\\theta_{i+1}-\\theta_i\\rVert - \\lVert\\theta_i-\\theta_{i-1}\\rVert)\\,\\tau_i`;
``climbing_image=True`` lets the highest point climb along the tangent instead (Henkelman, Uberuaga &
Jónsson 2000), as AutoNEB (Draxler et al. 2018) does. The forces and the spring's proximal step live in
:mod:`landscape._string_forces`.

All interior points take one step together: their gradients come from :func:`torch.func.vmap` over
stacked parameters, or from a loop over points. ``batching="auto"`` picks one by a fixed rule on the
device, the model's layers and the string's size (:func:`_choose_batching`), never by the clock, so
two identical calls take the same code path; ``python -m runners.bench string`` measures both.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad_and_value, replace_all_batch_norm_modules_, vmap

from landscape._checks import check_mean_loss, check_string_config, check_training_batches
from landscape._progress import track
from landscape.distributed import all_reduce_sum, is_distributed, rank, world_size
from landscape._types import Batches, LossFn, Params
from landscape.evaluation import has_batchnorm, stack_params, unstack_params
from landscape._string_forces import Spring, apply_spring, descent_directions, spring_proximal
from landscape._string_step import curvature_step

__all__ = ["StringConfig", "StringResult", "elastic_string"]


@dataclass(frozen=True)
class StringConfig:
    """How the string is built and optimised; defaults are the paper's (3 interior points, 3 epochs, SGD) but the step.

    Attributes:
        num_points: :math:`M`, points of the string including both endpoints (>= 3).
        stiffness: :math:`k >= 0` of the elastic term (the paper gives no value; at 1 a deviation of
            norm 1 from the straight path pulls back as hard as a loss gradient of norm 1).
        epochs: passes over the training batches (ignored when ``steps`` is given).
        steps: number of mini-batch steps; ``None`` means ``epochs`` passes.
        lr: learning rate, or ``"auto"`` (default, SGD only): ``1 / lambda_max`` from the endpoints' curvature
            (:mod:`landscape._string_step`), which needs no tuning. The paper's fixed 0.1 suits minima reached
            by SGD at lr 0.1; between Adam-trained minima (sharper) it made the string's barrier 0.49 against
            0.03 for the straight line on MNIST-1D.
        optimizer: ``"sgd"`` (the paper) or ``"adam"``.
        momentum: SGD momentum (0: plain SGD, the paper).
        forces: ``"elastic"`` (the paper: gradient of the energy) or ``"neb"`` (nudged elastic band).
        spring: integration of the elastic term with ``forces="elastic"``: ``"implicit"`` or ``"explicit"``.
        climbing_image: with ``forces="neb"``, the highest interior point climbs along the tangent.
        record_every: the mini-batch loss of every point is recorded every so many steps.
        batching: ``"vmap"`` (one :func:`torch.func.vmap` call over the stacked points), ``"loop"``
            (one gradient call per point) or ``"auto"``: vmap on any device but the CPU; on the CPU
            vmap only while the stacked interior points hold at most 64 MiB of parameters and the
            model has no convolution layer, else loop (measurements in :func:`_choose_batching`).
        seed: order of the mini-batches in every epoch.
    """

    num_points: int = 5
    stiffness: float = 1.0
    epochs: int = 3
    steps: int | None = None
    lr: float | Literal["auto"] = "auto"
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = 0.0
    forces: Literal["elastic", "neb"] = "elastic"
    spring: Literal["implicit", "explicit"] = "implicit"
    climbing_image: bool = False
    record_every: int = 10
    batching: Literal["auto", "vmap", "loop"] = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        check_string_config(self)


@dataclass(frozen=True)
class StringResult:
    """The optimised string and its trajectory.

    Attributes:
        points: ``{name: tensor of shape (M, *shape)}``, endpoints included, point ``i`` at
            :math:`\\alpha_i = i / (M-1)`.
        trajectory_step: steps at which losses were recorded (before that step's update).
        trajectory_loss: ``(len(trajectory_step), M)`` mini-batch training loss of every point.
        steps: steps taken.
        batching: ``"vmap"`` or ``"loop"``, the one used.
        lr: the step taken (``config.lr``, or the one ``"auto"`` chose).
        lambda_max: with ``lr="auto"``, the top Hessian eigenvalue at endpoint a and b it was chosen from; else ``None``.
    """

    points: Params
    trajectory_step: np.ndarray
    trajectory_loss: np.ndarray
    steps: int
    batching: str
    lr: float
    lambda_max: tuple[float, float] | None = None

    @property
    def alpha(self) -> np.ndarray:
        """Positions :math:`i/(M-1)` of the points along the path."""
        return np.linspace(0.0, 1.0, self.num_points)

    @property
    def num_points(self) -> int:
        """:math:`M`, endpoints included."""
        return int(next(iter(self.points.values())).shape[0])


def _chain(a: Params, interior: Params, b: Params) -> Params:
    return {name: torch.cat([a[name][None], interior[name], b[name][None]]) for name in interior}


def _data_parallel(step_fn: Callable) -> Callable:
    """``step_fn`` on this rank's slice of the mini-batch, slices' means weighted by size and all-reduced.

    Every rank draws the same mini-batch (same seeded order), so the summed result is the mini-batch's
    own gradient and loss, identical on every rank, and all ranks move the string alike. Exact for
    networks without BatchNorm; with it, each slice normalises with its own batch statistics.
    """

    def step(stacked: Params, x: torch.Tensor, y: torch.Tensor) -> tuple[Params, torch.Tensor]:
        xs, ys = x.tensor_split(world_size()), y.tensor_split(world_size())
        mine_x, mine_y = xs[rank()], ys[rank()]
        if len(mine_x):
            grads, losses = step_fn(stacked, mine_x, mine_y)
            share = len(mine_x) / len(x)
            grads, losses = {n: g * share for n, g in grads.items()}, losses * share
        else:
            grads = {n: torch.zeros_like(t) for n, t in stacked.items()}
            losses = torch.zeros(next(iter(stacked.values())).shape[0], dtype=grads[next(iter(grads))].dtype, device=x.device)
        total = all_reduce_sum({**grads, "__loss__": losses})
        return {n: total[n] for n in grads}, total["__loss__"]

    return step


# Stacked interior parameters up to which vmap pays on the CPU (see _choose_batching's measurements).
_VMAP_CPU_BUDGET_BYTES = 64 * 2**20


def _choose_batching(model: nn.Module, params: Params, num_points: int, device: torch.device) -> Literal["vmap", "loop"]:
    """The ``batching="auto"`` rule: a pure function of the device type, the model's layers and the string's size.

    vmap on any device but the CPU, where one batched call fills the device that a loop of small
    calls leaves idle. On the CPU, vmap while the ``num_points - 2`` stacked interior points hold at
    most 64 MiB of parameters and the model has no convolution layer, else a loop over the points,
    which also keeps one point's intermediate tensors alive at a time instead of all of them.
    Measured with ``python -m runners.bench string --threads 1`` (1-D VanillaCNN, MNIST-1D shapes,
    batch 100, 4 to 11 points; loop time over vmap time, > 1 when vmap pays): eLCN 1.4-2.9; eFCN
    1.2-1.4 at 0.08M parameters, 1.1-1.4 at 1.1M (37 MiB stacked), about 1 (0.94-1.2) from 32 to
    48 MiB, 0.91 at 145 MiB; CNN of 32-64 channels 0.69-0.95, because vmap runs the points'
    convolutions as one grouped convolution, slow on the CPU (narrower CNNs gain from vmap, but
    their steps take milliseconds). Every rank of a torch.distributed group runs on the same device
    type, so all ranks choose alike.

    Args:
        model: the architecture.
        params: one point's parameters (their sizes and dtypes count, not their values).
        num_points: :math:`M`, endpoints included.
        device: where the string is computed.

    Returns:
        ``"vmap"`` or ``"loop"``.
    """
    if device.type != "cpu":
        return "vmap"
    stacked = (num_points - 2) * sum(t.numel() * t.element_size() for t in params.values())
    convolutional = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
    return "vmap" if stacked <= _VMAP_CPU_BUDGET_BYTES and not convolutional else "loop"


def _initial_string(params_a: Params, params_b: Params, num_points: int, device: torch.device) -> tuple[Params, Params, Params]:
    """The fixed endpoints on ``device`` and the interior points on the linear path between them.

    Returns ``(a, b, interior)``; ``interior`` maps each name to a ``(M - 2, *shape)`` leaf tensor that
    the optimiser moves, point ``i`` starting at :math:`\\theta_a + \\tfrac{i}{M-1} (\\theta_b - \\theta_a)`.
    """
    a = {n: t.detach().to(device) for n, t in params_a.items()}
    b = {n: params_b[n].detach().to(device) for n in a}
    positions = torch.linspace(0.0, 1.0, num_points)[1:-1].tolist()
    interior = {n: torch.stack([torch.lerp(a[n], b[n], t) for t in positions]).requires_grad_() for n in a}
    return a, b, interior


def _functional_copy(model: nn.Module, device: torch.device) -> nn.Module:
    """A private eval-mode copy of ``model`` for :func:`torch.func.functional_call`, its BatchNorm layers
    without running statistics (so vmap can batch them): each mini-batch is normalised by its own, as in training."""
    shell = copy.deepcopy(model).to(device).eval()
    if has_batchnorm(shell):
        replace_all_batch_norm_modules_(shell)
    return shell


def _point_gradients(point_loss: Callable, batching: str) -> Callable[[Params, torch.Tensor, torch.Tensor], tuple[Params, torch.Tensor]]:
    """``(stacked points, x, y) -> (stacked loss gradients, losses)`` on one mini-batch.

    ``"vmap"`` maps one gradient function over the stacked points, ``"loop"`` calls it point by point;
    both give the same numbers. Under torch.distributed each rank computes on its slice of the batch.
    """
    gradient = grad_and_value(point_loss)
    if batching == "vmap":
        step_fn = vmap(gradient, in_dims=(0, None, None))
    else:

        def step_fn(stacked: Params, x: torch.Tensor, y: torch.Tensor) -> tuple[Params, torch.Tensor]:
            outputs = [gradient(point, x, y) for point in unstack_params(stacked)]
            return stack_params([g for g, _ in outputs]), torch.stack([v for _, v in outputs])

    return _data_parallel(step_fn) if is_distributed() else step_fn


def _optimiser(leaves: list[torch.Tensor], config: StringConfig, lr: float) -> torch.optim.Optimizer:
    """SGD (with ``config.momentum``) or Adam over the interior points, at ``lr``."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(leaves, lr=lr, momentum=config.momentum)
    return torch.optim.Adam(leaves, lr=lr)


def _batch_order(num_batches: int, seed: int) -> Iterator[int]:
    """Index of every step's mini-batch: each epoch a fresh permutation (seeded once), taken from its end."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(num_batches, generator=generator).tolist()
        while order:
            yield order.pop()


def _step(interior: Params, a: Params, b: Params, x: torch.Tensor, y: torch.Tensor, *, gradients: Callable,
          optimiser: torch.optim.Optimizer, spring: Spring | None, config: StringConfig) -> torch.Tensor:
    """One optimisation step of every interior point on the mini-batch ``(x, y)``, in place; their losses before it."""
    current = {n: t.detach() for n, t in interior.items()}
    grads, losses = gradients(current, x, y)
    grads = descent_directions(grads, _chain(a, current, b), losses, config)
    for name, leaf in interior.items():
        leaf.grad = grads[name].detach()
    optimiser.step()
    if spring is not None:
        apply_spring(interior, a, b, spring)
    return losses


def _loss_profile(point_loss: Callable, a: Params, b: Params, losses: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """One row of the trajectory: the mini-batch loss of every point, the fixed endpoints included."""
    with torch.no_grad():
        return [float(point_loss(a, x, y)), *losses.detach().cpu().tolist(), float(point_loss(b, x, y))]


def elastic_string(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Batches,
    *,
    params_a: Params,
    params_b: Params,
    config: StringConfig = StringConfig(),
    device: torch.device | str | None = None,
    progress: bool = False,
) -> StringResult:
    """Optimise the string between ``params_a`` and ``params_b`` on the training ``batches``.

    Forces come from the model in eval mode (dropout off, so the energy is a function of the
    parameters); BatchNorm layers normalise with the statistics of each mini-batch, as in training.
    The string starts on the linear path (:func:`_initial_string`); each step (:func:`_step`) takes
    every point's loss gradient on one mini-batch, turns it into the descent direction of the chosen
    forces, lets the optimiser move the points and, with the implicit spring, applies its proximal step;
    every ``record_every`` steps the points' losses join the trajectory (:func:`_loss_profile`).

    Args:
        model: the architecture (not modified; a private copy is used).
        loss_fn: a mean-reduced loss; ``None`` for ``nn.CrossEntropyLoss()``.
        batches: re-iterable ``(x, y)`` training batches.
        params_a, params_b: the fixed endpoints, ``{name: tensor}`` of the model's parameters.
        config: the :class:`StringConfig` (its ``seed`` orders the mini-batches).
        device: where to compute (default: where ``params_a`` lives).
        progress: show progress over the steps (a bar on a terminal, else a line every ~30 s: :mod:`landscape._progress`).

    Returns:
        A :class:`StringResult`.

    Example:
        >>> model = nn.Linear(2, 1, bias=False)
        >>> batches = [(torch.eye(2), torch.zeros(2, 1))]
        >>> a, b = {"weight": torch.tensor([[-1.0, 0.0]])}, {"weight": torch.tensor([[1.0, 0.0]])}
        >>> stiff = StringConfig(num_points=3, stiffness=1e9, steps=5, batching="loop")
        >>> elastic_string(model, nn.MSELoss(), batches, params_a=a, params_b=b, config=stiff).points["weight"][1].abs().max() < 1e-6
        tensor(True)
    """
    loss_fn = check_mean_loss(loss_fn)
    batches = check_training_batches(batches)
    device = torch.device(device) if device is not None else next(iter(params_a.values())).device
    a, b, interior = _initial_string(params_a, params_b, config.num_points, device)
    shell = _functional_copy(model, device)

    def point_loss(params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(shell, params, (x,)), y)

    batching = _choose_batching(model, a, config.num_points, device) if config.batching == "auto" else config.batching
    gradients = _point_gradients(point_loss, batching)
    lr, lambda_max = config.lr, None
    if lr == "auto":
        explicit = config.forces == "neb" or config.spring == "explicit"
        chosen = curvature_step(shell, loss_fn, batches, params_a=a, params_b=b, spring_stiffness=config.stiffness if explicit else 0.0,
                                seed=config.seed)
        lr, lambda_max = chosen.lr, chosen.lambda_max
    optimiser = _optimiser(list(interior.values()), config, lr)
    first = next(iter(interior.values()))
    spring = spring_proximal(config, lr, len(first), first.dtype, device)

    total = config.steps if config.steps is not None else config.epochs * len(batches)
    steps_seen, losses_seen = [], []
    for step, index in zip(track(range(total), desc="string steps", enabled=progress), _batch_order(len(batches), config.seed)):
        x, y = (t.to(device) for t in batches[index])
        losses = _step(interior, a, b, x, y, gradients=gradients, optimiser=optimiser, spring=spring, config=config)
        if step % config.record_every == 0 or step == total - 1:
            steps_seen.append(step)
            losses_seen.append(_loss_profile(point_loss, a, b, losses, x, y))
    return StringResult(
        points=_chain(a, {n: t.detach() for n, t in interior.items()}, b),
        trajectory_step=np.asarray(steps_seen, dtype=np.int64),
        trajectory_loss=np.asarray(losses_seen, dtype=np.float64).reshape(len(steps_seen), config.num_points),
        steps=total,
        batching=batching,
        lr=float(lr),
        lambda_max=lambda_max,
    )
