"""The full-data average loss of a model as a pure function of some of its parameters.

:math:`L(\\theta) = \\sum_b \\frac{n_b}{N} \\ell_b(\\theta)` for batches of sizes :math:`n_b` whose loss
:math:`\\ell_b` is a mean (``reduction="mean"``, the default of torch losses), so the average is exact
whatever the batching.
Gradients and Hessian-vector products go through ``torch.func`` on a ``functional_call`` of the model,
the HVP forward-over-reverse, :math:`Hv = \\partial_\\epsilon \\nabla L(\\theta + \\epsilon v)|_0`
(``jvp(grad(L))``), which builds no double-backward graph to leak.
Under ``torch.distributed`` each rank keeps its :func:`~landscape.distributed.shard` of the batches and
the weighted sums are all-reduced, so every rank holds the exact full-data value.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

from landscape._checks import check_deterministic_mode, check_hessian_batches, check_mean_loss
from landscape._precision import full_float32
from landscape._types import Batches, LossFn, Params
from landscape.distributed import all_reduce_sum, reduce_floats, shard
from landscape.evaluation import Evaluation, _local_sums, _reduce_evaluation


class Objective:
    """Average loss over ``batches`` as a function of the parameters named in ``moving``.

    The other parameters and the buffers are held fixed at the model's values. Batches are moved to the
    parameters' device once, because probes iterate over them hundreds of times. This is the one place
    a probe shards its batches: every method works on ``self.batches`` (this rank's) and reduces.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, batches: Batches, *, moving: tuple[str, ...]) -> None:
        check_deterministic_mode(model)
        pairs = check_hessian_batches(batches)
        self.model = model
        self.loss_fn = check_mean_loss(loss_fn)
        params = dict(model.named_parameters())
        self.point = {name: params[name].detach() for name in moving}
        self.fixed = {name: p.detach() for name, p in params.items() if name not in self.point}
        self.fixed.update({name: b for name, b in model.named_buffers()})
        device = next(iter(self.point.values())).device
        self.batches = [(x.to(device), y.to(device)) for x, y in shard(pairs)]
        (total,) = reduce_floats(sum(len(x) for x, _ in self.batches), device=device)
        self.weights = [len(x) / total for x, _ in self.batches]

    def _batch_loss(self, moving: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(functional_call(self.model, {**self.fixed, **moving}, (x,)), y)

    def at(self, delta: Params | None) -> dict[str, torch.Tensor]:
        """The moving parameters displaced by ``delta`` (missing names stay put)."""
        if not delta:
            return dict(self.point)
        return {name: p + delta[name] if name in delta else p for name, p in self.point.items()}

    def loss(self, moving: Params | None = None) -> float:
        """:math:`L` at ``moving`` (default: the model's point); any loss, not only classification's."""
        moving = self.point if moving is None else moving
        with torch.no_grad():
            (total,) = reduce_floats(float(sum(w * self._batch_loss(moving, x, y) for w, (x, y) in zip(self.weights, self.batches))))
            return total

    def evaluate(self, moving: Params | None = None) -> Evaluation:
        """Loss and accuracy at ``moving`` (default: the model's point), in eval mode, over the full data."""
        moving = self.point if moving is None else moving
        device = next(iter(self.point.values())).device
        sums = _local_sums(self.model, self.loss_fn, self.batches, {**self.fixed, **moving}, device)
        return _reduce_evaluation(*sums, device=device)

    def gradient(self, moving: Params | None = None) -> dict[str, torch.Tensor]:
        """:math:`\\nabla L` at ``moving`` (default: the model's point)."""
        moving = self.point if moving is None else moving
        total = {name: torch.zeros_like(p) for name, p in moving.items()}
        for w, (x, y) in zip(self.weights, self.batches):
            with full_float32():
                g = grad(self._batch_loss)(moving, x, y)
            for name in total:
                total[name].add_(g[name], alpha=w)
        return all_reduce_sum(total)

    def _batch_hvp(self, tangent: Params, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        if y.is_floating_point():
            # A materialised zero tangent for float targets: torch's forward derivative of
            # mse_loss_backward writes into the target's implicit ZeroTensor tangent and fails.
            return jvp(lambda m, t: grad(self._batch_loss)(m, x, t), (self.point, y), (tangent, torch.zeros_like(y)))[1]
        return jvp(lambda m: grad(self._batch_loss)(m, x, y), (self.point,), (tangent,))[1]

    def hvp(self, tangent: Params, *, stacked: bool = False) -> dict[str, torch.Tensor]:
        """:math:`H v` at the model's point for a tangent ``{name: tensor}`` over the moving names.

        With ``stacked``, every tangent carries a leading dimension of several vectors, mapped with
        ``vmap``: the primal forward and backward passes are then shared by all of them, which makes
        each product markedly cheaper than one at a time.
        """
        tangent = {name: tangent[name].to(p) for name, p in self.point.items()}
        product = vmap(self._batch_hvp, in_dims=(0, None, None)) if stacked else self._batch_hvp
        total = {name: torch.zeros_like(t) for name, t in tangent.items()}
        for w, (x, y) in zip(self.weights, self.batches):
            with full_float32():
                hv = product(tangent, x, y)
            for name in total:
                total[name].add_(hv[name], alpha=w)
        return all_reduce_sum(total)
