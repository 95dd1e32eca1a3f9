"""Gradient confusion: pairwise cosine similarities of mini-batch gradients.

Sankararaman et al. (2020) call training "confused" when gradients of different mini-batches point
in opposite directions; ExpandNets (Guo et al., NeurIPS 2020, Fig. 2, 5, 6) track the *minimum*
pairwise cosine similarity at the end of each epoch, and the density of all of them at the end of
training, to show that linearly expanded nets are less confused. For mini-batch gradients
:math:`g_i = \\nabla_\\theta \\ell_{B_i}(\\theta)`, :math:`i = 1..n`,

.. math::

    c_{ij} = \\frac{\\langle g_i, g_j \\rangle}{\\lVert g_i \\rVert \\, \\lVert g_j \\rVert},
    \\qquad 1 \\le i < j \\le n, \\qquad c_{\\min} = \\min_{i<j} c_{ij}.

The gradients come from ``torch.func.grad`` over a ``functional_call`` of the model (its
parameters and buffers are never written), vectorised with ``vmap`` over the batches when they all
have the same size, in chunks of ``chunk_size`` to bound memory; otherwise one batch at a time.
In ``mode="train"`` BatchNorm normalises with each mini-batch's own statistics, as in the training
step whose confusion is measured (its running statistics are updated on throw-away copies);
dropout then draws its masks from torch's default generator, as training does.

Example (gradients of ``(w . x - y)^2 / 2`` at ``w = 0`` are ``-y x``):
    >>> from torch import nn
    >>> model = nn.Linear(2, 1, bias=False)
    >>> _ = nn.init.zeros_(model.weight)
    >>> xs = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]])]
    >>> ys = [torch.tensor([[1.0]]), torch.tensor([[1.0]]), torch.tensor([[-1.0]])]
    >>> result = gradient_cosines(model, nn.MSELoss(), list(zip(xs, ys)))
    >>> result.cosines.tolist(), result.minimum
    ([0.0, -1.0, 0.0], -1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from landscape._checks import check_finite_model, check_hessian_batches, check_mean_loss, check_positive_int
from landscape._types import Batches, LossFn
from landscape.evaluation import _modes

__all__ = ["GradientCosines", "gradient_cosines", "pairwise_cosines"]


@dataclass(frozen=True)
class GradientCosines:
    """Pairwise cosine similarities of the gradients of ``num_batches`` mini-batches.

    Attributes:
        cosines: the ``n (n - 1) / 2`` similarities :math:`c_{ij}`, ``i < j``, row-major (float64, CPU).
        pairs: ``(n (n - 1) / 2, 2)`` indices ``(i, j)`` into the batches used, aligned with ``cosines``.
        batch_indices: which of the given batches were used (all, or the sampled ones), in order.
        norms: gradient norms :math:`\\lVert g_i \\rVert` (float64, CPU).
        minimum, mean: of ``cosines``; ``minimum`` is the paper's per-epoch curve.
        num_batches: ``n``.
        vectorized: whether the gradients were computed with ``vmap``.
    """

    cosines: torch.Tensor
    pairs: torch.Tensor
    batch_indices: tuple[int, ...]
    norms: torch.Tensor
    minimum: float
    mean: float
    num_batches: int
    vectorized: bool


def pairwise_cosines(gradients: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarity of every pair of rows ``i < j`` of ``gradients`` (``(n, P)``).

    A zero row has no direction: its similarities are reported as 0 (orthogonal) rather than NaN.

    Returns:
        ``(cosines, pairs)``: the ``n (n - 1) / 2`` similarities and their ``(i, j)`` indices.

    Example:
        >>> c, p = pairwise_cosines(torch.tensor([[1.0, 0.0], [1.0, 1.0], [-2.0, 0.0]]))
        >>> [round(v, 4) for v in c.tolist()], p.tolist()
        ([0.7071, -1.0, -0.7071], [[0, 1], [0, 2], [1, 2]])
    """
    norms = gradients.norm(dim=1, keepdim=True)
    unit = gradients / torch.where(norms > 0, norms, torch.ones_like(norms))
    pairs = torch.triu_indices(len(gradients), len(gradients), offset=1, device=gradients.device)
    return (unit @ unit.T)[pairs[0], pairs[1]], pairs.T


def _sample(count: int, num_batches: int | None, seed: int) -> list[int]:
    if num_batches is None or num_batches >= count:
        return list(range(count))
    check_positive_int("num_batches", num_batches)
    if num_batches < 2:
        raise ValueError(f"num_batches must be at least 2 to form a pair, got {num_batches}")
    return sorted(torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:num_batches].tolist())


def gradient_cosines(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Batches,
    *,
    num_batches: int | None = None,
    seed: int = 0,
    mode: Literal["train", "eval"] = "train",
    vectorize: bool = True,
    chunk_size: int | None = None,
) -> GradientCosines:
    """Pairwise cosine similarities of the mini-batch gradients of ``model`` (gradient confusion).

    Args:
        model: any module; its parameters, buffers and train/eval flags are left as they were.
        loss_fn: mean loss of a batch; ``None`` for ``nn.CrossEntropyLoss()``.
        batches: ``(x, y)`` mini-batches (a list, or anything iterable twice); each one gives one gradient.
        num_batches: use a random subset of this many batches; default all.
        seed: seed of that subset.
        mode: ``"train"`` (BatchNorm on batch statistics, the training gradient) or ``"eval"``.
        vectorize: ``vmap`` over batches of equal size (falls back to a loop when sizes differ). It
            pays for many small batches (2 CPU threads, SmallNet, 50 batches of 8: loop/vmap 6.2x)
            and loses for a few large ones (20 batches of 100: 0.5x); see ``runners.bench gradcos``.
        chunk_size: batches per ``vmap`` call; ``None`` (all at once) is fastest, a small number
            bounds the memory of large nets (it grows with ``chunk_size`` times a backward pass).

    Returns:
        A :class:`GradientCosines` with every :math:`c_{ij}` and the minimum.

    Raises:
        ValueError: fewer than two batches, a bad ``num_batches`` / ``mode``, or a loss that is not a mean.
    """
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
    loss_fn = check_mean_loss(loss_fn)
    check_finite_model(model)
    pairs = check_hessian_batches(batches)
    if len(pairs) < 2:
        raise ValueError(f"gradient cosines need at least 2 batches to form a pair, got {len(pairs)}; pass more (x, y) batches")
    if chunk_size is not None:
        check_positive_int("chunk_size", chunk_size)
    used = _sample(len(pairs), num_batches, seed)
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError(f"{type(model).__name__} has no trainable parameters, so no gradients to compare; unfreeze some")
    buffers = {name: b.detach() for name, b in model.named_buffers()}
    device = next(iter(params.values())).device
    xs = [pairs[i][0].to(device) for i in used]
    ys = [pairs[i][1].to(device) for i in used]

    def batch_loss(theta: dict[str, torch.Tensor], state: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(model, {**theta, **state}, (x,)), y)

    def flat(g: dict[str, torch.Tensor], keep: int) -> torch.Tensor:
        return torch.cat([v.reshape(keep, -1) for v in g.values()], dim=1)

    vectorized = vectorize and len({x.shape for x in xs}) == 1 and len({y.shape for y in ys}) == 1
    rows = []
    with _modes(model, training=mode == "train"):
        if vectorized:
            step = chunk_size or len(xs)
            # Buffers are copied per batch so that BatchNorm's in-place running-stat updates land on
            # batched throw-away tensors instead of failing under vmap (or touching the model).
            per_batch = vmap(grad(batch_loss), in_dims=(None, 0, 0, 0), randomness="different")
            for start in range(0, len(xs), step):
                x, y = torch.stack(xs[start:start + step]), torch.stack(ys[start:start + step])
                state = {name: b.unsqueeze(0).repeat(len(x), *([1] * b.dim())) for name, b in buffers.items()}
                rows.append(flat(per_batch(params, state, x, y), len(x)).double())
        else:
            for x, y in zip(xs, ys):
                state = {name: b.clone() for name, b in buffers.items()}
                rows.append(flat(grad(batch_loss)(params, state, x, y), 1).double())
    gradients = torch.cat(rows)
    cosines, index = pairwise_cosines(gradients)
    return GradientCosines(
        cosines=cosines.cpu(),
        pairs=index.cpu(),
        batch_indices=tuple(used),
        norms=gradients.norm(dim=1).cpu(),
        minimum=float(cosines.min()),
        mean=float(cosines.mean()),
        num_batches=len(used),
        vectorized=vectorized,
    )
