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
Jónsson 2000), as AutoNEB (Draxler et al. 2018) does.

All interior points take one step together: their gradients come from :func:`torch.func.vmap` over
stacked parameters, or from a loop over points, whichever a timed trial step finds faster
(``batching="auto"``; vmap pays on GPUs, hardly on CPUs).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad_and_value, replace_all_batch_norm_modules_, vmap
from tqdm.auto import tqdm

from landscape._checks import check_mean_loss, check_string_config, check_training_batches
from landscape.distributed import all_reduce_sum, is_distributed, rank, reduce_floats, world_size
from landscape.evaluation import has_batchnorm, stack_params, unstack_params
from landscape._timing import best_time

__all__ = ["StringConfig", "StringResult", "elastic_string"]

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class StringConfig:
    """How the string is built and optimised; defaults are the paper's (3 interior points, 3 epochs, SGD lr 0.1).

    Attributes:
        num_points: :math:`M`, points of the string including both endpoints (>= 3).
        stiffness: :math:`k >= 0` of the elastic term (the paper gives no value; at 1 a deviation of
            norm 1 from the straight path pulls back as hard as a loss gradient of norm 1).
        epochs: passes over the training batches (ignored when ``steps`` is given).
        steps: number of mini-batch steps; ``None`` means ``epochs`` passes.
        lr: learning rate (the paper's 0.1 suits minima reached by SGD at lr 0.1; the sharper minima
            of Adam-trained nets need about 0.01, measured on MNIST-1D, or the point losses rise).
        optimizer: ``"sgd"`` (the paper) or ``"adam"``.
        momentum: SGD momentum (0: plain SGD, the paper).
        forces: ``"elastic"`` (the paper: gradient of the energy) or ``"neb"`` (nudged elastic band).
        spring: integration of the elastic term with ``forces="elastic"``: ``"implicit"`` or ``"explicit"``.
        climbing_image: with ``forces="neb"``, the highest interior point climbs along the tangent.
        record_every: the mini-batch loss of every point is recorded every so many steps.
        batching: ``"vmap"``, ``"loop"`` or ``"auto"`` (time one step of each, keep the faster).
        seed: order of the mini-batches in every epoch.
    """

    num_points: int = 5
    stiffness: float = 1.0
    epochs: int = 3
    steps: int | None = None
    lr: float = 0.1
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
        seconds_per_step: seconds of one gradient step of each batching, measured when ``batching="auto"``.
    """

    points: Params
    trajectory_step: np.ndarray
    trajectory_loss: np.ndarray
    steps: int
    batching: str
    seconds_per_step: dict[str, float] = field(default_factory=dict)

    @property
    def alpha(self) -> np.ndarray:
        """Positions :math:`i/(M-1)` of the points along the path."""
        return np.linspace(0.0, 1.0, self.num_points)

    @property
    def num_points(self) -> int:
        """:math:`M`, endpoints included."""
        return int(next(iter(self.points.values())).shape[0])


def _per_point(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast one value per point over a stacked ``(P, *shape)`` tensor."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def _chain(a: Params, interior: Params, b: Params) -> Params:
    return {name: torch.cat([a[name][None], interior[name], b[name][None]]) for name in interior}


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


def _spring_proximal(count: int, step: float, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:math:`S = (I + c A)^{-1}` and the endpoint weights :math:`c S e_1`, :math:`c S e_P` (float64 solve)."""
    lap = 2 * torch.eye(count, dtype=torch.float64) - torch.diag(torch.ones(count - 1, dtype=torch.float64), 1)
    lap = lap - torch.diag(torch.ones(count - 1, dtype=torch.float64), -1)
    solve = torch.linalg.inv(torch.eye(count, dtype=torch.float64) + step * lap)
    cast = dict(dtype=dtype, device=device)
    return solve.to(**cast), (step * solve[:, 0]).to(**cast), (step * solve[:, -1]).to(**cast)


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


def elastic_string(
    model: nn.Module,
    params_a: Mapping[str, torch.Tensor],
    params_b: Mapping[str, torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    config: StringConfig = StringConfig(),
    loss_fn: nn.Module | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> StringResult:
    """Optimise the string between ``params_a`` and ``params_b`` on the training ``batches``.

    Forces come from the model in eval mode (dropout off, so the energy is a function of the
    parameters); BatchNorm layers normalise with the statistics of each mini-batch, as in training.

    Args:
        model: the architecture (not modified; a private copy is used).
        params_a, params_b: the fixed endpoints, ``{name: tensor}`` of the model's parameters.
        batches: re-iterable ``(x, y)`` training batches.
        config: the :class:`StringConfig`.
        loss_fn: a mean-reduced loss (default ``nn.CrossEntropyLoss()``).
        device: where to compute (default: where ``params_a`` lives).
        progress: show a tqdm bar over the steps.

    Returns:
        A :class:`StringResult`.

    Example:
        >>> model = nn.Linear(2, 1, bias=False)
        >>> batches = [(torch.eye(2), torch.zeros(2, 1))]
        >>> a, b = {"weight": torch.tensor([[-1.0, 0.0]])}, {"weight": torch.tensor([[1.0, 0.0]])}
        >>> stiff = StringConfig(num_points=3, stiffness=1e9, steps=5, batching="loop")
        >>> elastic_string(model, a, b, batches, config=stiff, loss_fn=nn.MSELoss()).points["weight"][1].abs().max() < 1e-6
        tensor(True)
    """
    loss_fn = check_mean_loss(loss_fn)
    batches = check_training_batches(batches)
    device = torch.device(device) if device is not None else next(iter(params_a.values())).device
    shell = copy.deepcopy(model).to(device).eval()
    if has_batchnorm(shell):
        replace_all_batch_norm_modules_(shell)
    a = {n: t.detach().to(device) for n, t in params_a.items()}
    b = {n: params_b[n].detach().to(device) for n in a}
    positions = torch.linspace(0.0, 1.0, config.num_points)[1:-1].tolist()
    interior = {n: torch.stack([torch.lerp(a[n], b[n], t) for t in positions]).requires_grad_() for n in a}

    def point_loss(params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(shell, params, (x,)), y)

    gradient = grad_and_value(point_loss)
    batched = vmap(gradient, in_dims=(0, None, None))

    def looped(stacked: Params, x: torch.Tensor, y: torch.Tensor) -> tuple[Params, torch.Tensor]:
        outputs = [gradient(point, x, y) for point in unstack_params(stacked)]
        return stack_params([g for g, _ in outputs]), torch.stack([v for _, v in outputs])

    x0, y0 = (t.to(device) for t in batches[0])
    current = {n: t.detach() for n, t in interior.items()}
    candidates = {"vmap": batched, "loop": looped}
    timings = {}
    if config.batching == "auto":
        timings = {name: best_time(lambda fn=fn: fn(current, x0, y0), 1, device) for name, fn in candidates.items()}
        # Ranks must agree on the choice: pick on the timings summed over them.
        timings = dict(zip(timings, reduce_floats(*timings.values(), device=device)))
    batching = min(timings, key=timings.get) if timings else config.batching
    step_fn = _data_parallel(candidates[batching]) if is_distributed() else candidates[batching]

    leaves = list(interior.values())
    optimiser = (
        torch.optim.SGD(leaves, lr=config.lr, momentum=config.momentum)
        if config.optimizer == "sgd"
        else torch.optim.Adam(leaves, lr=config.lr)
    )
    implicit = config.forces == "elastic" and config.spring == "implicit" and config.stiffness > 0
    if implicit:
        dtype = leaves[0].dtype
        solve, weight_a, weight_b = _spring_proximal(len(positions), config.lr * config.stiffness, dtype, device)

    total = config.steps if config.steps is not None else config.epochs * len(batches)
    generator = torch.Generator().manual_seed(config.seed)
    order: list[int] = []
    steps_seen, losses_seen = [], []
    for step in tqdm(range(total), desc="string", disable=not progress):
        if not order:
            order = torch.randperm(len(batches), generator=generator).tolist()
        x, y = (t.to(device) for t in batches[order.pop()])
        current = {n: t.detach() for n, t in interior.items()}
        grads, losses = step_fn(current, x, y)
        full = _chain(a, current, b)
        if config.forces == "neb":
            grads = _neb_forces(grads, full, losses, config.stiffness, config.climbing_image)
        elif config.spring == "explicit":
            grads = _explicit_spring(grads, full, config.stiffness)
        for name, leaf in interior.items():
            leaf.grad = grads[name].detach()
        optimiser.step()
        if implicit:
            with torch.no_grad():
                for name, leaf in interior.items():
                    shape = (-1,) + (1,) * (leaf.dim() - 1)
                    proximal = torch.tensordot(solve, leaf, dims=1) + weight_a.view(shape) * a[name] + weight_b.view(shape) * b[name]
                    leaf.copy_(proximal)
        if step % config.record_every == 0 or step == total - 1:
            with torch.no_grad():
                ends = [float(point_loss(a, x, y)), float(point_loss(b, x, y))]
            steps_seen.append(step)
            losses_seen.append([ends[0], *losses.detach().cpu().tolist(), ends[1]])
    points = _chain(a, {n: t.detach() for n, t in interior.items()}, b)
    return StringResult(
        points=points,
        trajectory_step=np.asarray(steps_seen, dtype=np.int64),
        trajectory_loss=np.asarray(losses_seen, dtype=np.float64).reshape(len(steps_seen), config.num_points),
        steps=total,
        batching=batching,
        seconds_per_step=timings,
    )
