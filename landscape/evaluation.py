"""Functional evaluation: loss and accuracy of a parameter dict on a data set, without touching the model.

Every probe of the landscape asks the same question -- what are the loss and the accuracy of the
network at parameters :math:`\\theta` -- at many :math:`\\theta` that are not the model's own. The
answer here is a pure function of ``(model, loss_fn, batches, params)`` built on
:func:`torch.func.functional_call`: the model's parameters are never overwritten, and the result is
the exact full-data average

.. math::
    L(\\theta) = \\frac{1}{N} \\sum_b |b| \\, \\ell_b(\\theta), \\qquad
    \\mathrm{acc}(\\theta) = \\frac{1}{N} \\sum_{n} [\\arg\\max_c f_c(x_n; \\theta) = y_n],

where :math:`\\ell_b` is the mean loss of batch :math:`b`, so unequal batch sizes are weighted
correctly. Evaluation runs in eval mode (dropout off, BatchNorm on its running statistics); the
model's train/eval flags are restored afterwards.

BatchNorm running statistics are *not* parameters: at an interpolated :math:`\\theta` the averaged
statistics of two endpoints describe neither network. :func:`recalibrate_batchnorm` recomputes them
at :math:`\\theta` with one pass over the data (Izmailov et al., 2018, "Averaging weights leads to
wider optima", the ``bn_update`` of SWA): the running mean is the sample-weighted average of the batch
means, the running variance that of the (unbiased) batch variances.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(2, 2, bias=False)
    >>> batches = [(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))]
    >>> result = evaluate(model, None, batches, params={"weight": torch.zeros(2, 2)})
    >>> round(result.loss, 6) == round(math.log(2), 6), result.accuracy, result.count
    (True, 1.0, 2)
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from landscape._checks import check_mean_loss
from landscape._types import Batches, LossFn, Params
from landscape.distributed import all_reduce_sum, is_distributed, reduce_floats, shard

__all__ = [
    "Evaluation",
    "evaluate",
    "predict",
    "recalibrate_batchnorm",
    "has_batchnorm",
    "param_dict",
    "buffer_dict",
    "stack_params",
    "unstack_params",
    "flatten_params",
]

@dataclass(frozen=True)
class Evaluation:
    """Full-data loss and accuracy at one point of parameter space.

    Attributes:
        loss: sample-weighted mean of the loss over every batch.
        accuracy: fraction of samples whose largest logit is the target class.
        count: number of samples averaged over.
    """

    loss: float
    accuracy: float
    count: int


def param_dict(model: nn.Module, *, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """The model's parameters as a ``{name: tensor}`` dict, detached (sharing storage unless moved)."""
    return {name: p.detach().to(device) if device is not None else p.detach() for name, p in model.named_parameters()}


def buffer_dict(model: nn.Module, *, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """The model's buffers (BatchNorm running statistics, ...) as a ``{name: tensor}`` dict."""
    return {name: b.detach().to(device) if device is not None else b.detach() for name, b in model.named_buffers()}


def stack_params(points: Sequence[Params]) -> dict[str, torch.Tensor]:
    """Stack parameter dicts along a new leading dimension, the layout :func:`torch.func.vmap` maps over.

    Example:
        >>> stacked = stack_params([{"w": torch.zeros(3)}, {"w": torch.ones(3)}])
        >>> tuple(stacked["w"].shape)
        (2, 3)
    """
    return {name: torch.stack([point[name] for point in points]) for name in points[0]}


def unstack_params(stacked: Params) -> list[dict[str, torch.Tensor]]:
    """Inverse of :func:`stack_params`: one dict per index of the leading dimension."""
    count = len(next(iter(stacked.values())))
    return [{name: value[i] for name, value in stacked.items()} for i in range(count)]


def flatten_params(params: Params) -> torch.Tensor:
    """All entries of a parameter dict as one vector, in the dict's order (distances, norms, tangents).

    Example:
        >>> flatten_params({"a": torch.ones(2, 2), "b": torch.zeros(1)}).tolist()
        [1.0, 1.0, 1.0, 1.0, 0.0]
    """
    return nn.utils.parameters_to_vector(params.values())


def has_batchnorm(model: nn.Module) -> bool:
    """Whether the model holds a BatchNorm layer that tracks running statistics."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats for m in model.modules())


@contextlib.contextmanager
def _modes(model: nn.Module, *, training: bool) -> Iterator[None]:
    """Temporarily put every submodule in train or eval mode; the caller's flags are restored after."""
    flags = [(module, module.training) for module in model.modules()]
    model.train(training)
    try:
        yield
    finally:
        for module, flag in flags:
            module.training = flag


def _resolve_device(model: nn.Module, params: Params | None, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    source = next(iter(params.values()), None) if params else next(model.parameters(), None)
    return source.device if source is not None else torch.device("cpu")


def _state(model: nn.Module, params: Params | None, buffers: Params | None, device: torch.device) -> dict[str, torch.Tensor]:
    """Parameters and buffers for ``functional_call``, on ``device``; missing entries fall back to the model's."""
    state = {**param_dict(model), **buffer_dict(model), **(params or {}), **(buffers or {})}
    return {name: tensor.to(device) for name, tensor in state.items()}


def evaluate(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Batches,
    *,
    params: Params | None = None,
    buffers: Params | None = None,
    device: torch.device | str | None = None,
) -> Evaluation:
    """Loss and accuracy of ``model`` at ``params`` over every batch, in eval mode, without mutation.

    Args:
        model: the architecture; its own parameters and buffers fill in whatever ``params`` /
            ``buffers`` leave out.
        loss_fn: a loss with ``reduction="mean"``; ``None`` for ``nn.CrossEntropyLoss()``.
        batches: re-iterable ``(x, y)`` pairs; the average is over all of them.
        params: ``{name: tensor}`` to evaluate at (default: the model's own parameters).
        buffers: ``{name: tensor}`` of buffers, e.g. from :func:`recalibrate_batchnorm`.
        device: where to compute (default: the device of ``params`` or of the model).

    Returns:
        The full-data :class:`Evaluation`. Under ``torch.distributed`` every rank passes the same
        ``batches``, evaluates its :func:`~landscape.distributed.shard` and the sums are all-reduced.
    """
    loss_fn = check_mean_loss(loss_fn)
    device = _resolve_device(model, params, device)
    state = _state(model, params, buffers, device)
    return _reduce_evaluation(*_local_sums(model, loss_fn, shard(batches), state, device), device=device)


def _local_sums(model: nn.Module, loss_fn: LossFn, batches: Batches, state: Params, device: torch.device) -> tuple[float, int, int]:
    """Summed loss, correct predictions and samples over ``batches`` as given: this rank's, already sharded."""
    total_loss, correct, count = 0.0, 0, 0
    with torch.no_grad(), _modes(model, training=False):
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            logits = functional_call(model, state, (x,))
            total_loss += float(loss_fn(logits, y)) * len(y)
            correct += int((logits.argmax(dim=-1) == y).sum())
            count += len(y)
    return total_loss, correct, count


def _reduce_evaluation(total_loss: float, correct: int, count: int, *, device: torch.device) -> Evaluation:
    """The :class:`Evaluation` of the sums of :func:`_local_sums` added over ranks."""
    total_loss, correct, count = reduce_floats(total_loss, correct, count, device=device)
    count, correct = int(count), int(correct)
    if count == 0:
        raise ValueError("batches held no samples; evaluate needs at least one (x, y) pair with data")
    return Evaluation(loss=total_loss / count, accuracy=correct / count, count=count)


def predict(
    model: nn.Module,
    batches: Batches,
    *,
    params: Params | None = None,
    buffers: Params | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of every sample (eval mode) and the targets, concatenated over batches, on ``device``.

    Under ``torch.distributed`` each rank runs the model on its :func:`~landscape.distributed.shard` of
    the batches only; the logits are then assembled in batch order on every rank (each rank writes its
    rows into zeros and one all-reduce adds them up, exactly), so every rank returns the full result.
    """
    pairs = list(batches)
    device = _resolve_device(model, params, device)
    state = _state(model, params, buffers, device)
    targets = torch.cat([y.to(device) for _, y in pairs])
    mine = shard(range(len(pairs)))
    with torch.no_grad(), _modes(model, training=False):
        outputs = {i: functional_call(model, state, (pairs[i][0].to(device),)) for i in mine}
        if not is_distributed():
            return torch.cat([outputs[i] for i in mine]), targets
        # A rank without a batch still needs the logits' shape and dtype for the collective: one sample.
        like = outputs[mine[0]] if mine else functional_call(model, state, (pairs[0][0][:1].to(device),))
    starts = [0, *itertools.accumulate(len(y) for _, y in pairs)]
    logits = torch.zeros((starts[-1], *like.shape[1:]), dtype=like.dtype, device=device)
    for i, value in outputs.items():
        logits[starts[i]:starts[i + 1]] = value
    return all_reduce_sum(logits), targets


def recalibrate_batchnorm(
    model: nn.Module,
    batches: Batches,
    *,
    params: Params | None = None,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """BatchNorm running statistics recomputed at ``params``, returned as a new buffer dict.

    One pass over ``batches`` in train mode; batch :math:`b` enters with momentum
    :math:`|b| / (n_{\\text{seen}} + |b|)`, so the running mean is exactly the sample-weighted mean
    of the batch means (whatever the batch sizes) and the running variance the weighted mean of the
    batch variances. The model's buffers, flags and momenta are left as they were.

    Returns:
        ``{name: tensor}`` of every buffer of the model, BatchNorm statistics replaced.
    """
    device = _resolve_device(model, params, device)
    state = _state(model, params, None, device)
    # Fresh copies: functional_call makes BatchNorm update the tensors it is handed, in place.
    buffers = {name: state[name].clone() for name in buffer_dict(model)}
    state.update(buffers)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in norms]
    counters = {name: value.clone() for name, value in buffers.items() if not value.is_floating_point()}
    seen = 0
    try:
        with torch.no_grad(), _modes(model, training=True):
            for x, _ in shard(batches):
                for module in norms:
                    module.momentum = len(x) / (seen + len(x))
                functional_call(model, state, (x.to(device),))
                seen += len(x)
    finally:
        for module, momentum in zip(norms, momenta):
            module.momentum = momentum
    return _combine_ranks(buffers, counters, seen) if is_distributed() and buffers else buffers


def _combine_ranks(buffers: dict[str, torch.Tensor], start: Params, seen: int) -> dict[str, torch.Tensor]:
    """Each rank's statistics are weighted means over its shard: weight them by ``seen``, sum, divide.

    Counters (``num_batches_tracked``, starting at ``start``) add up their increments over the ranks.
    """
    device = next(iter(buffers.values())).device
    statistics = {name: value.double() * seen for name, value in buffers.items() if name not in start}
    increments = {name: (buffers[name] - value).double() for name, value in start.items()}
    sums = all_reduce_sum({**statistics, **increments, "__seen__": torch.tensor([float(seen)], dtype=torch.float64, device=device)})
    total = float(sums.pop("__seen__"))
    if total == 0:
        return buffers
    out = {name: (sums[name] / total).to(buffers[name].dtype) for name in statistics}
    out.update({name: (start[name] + sums[name]).to(buffers[name].dtype) for name in increments})
    return {name: out[name] for name in buffers}
