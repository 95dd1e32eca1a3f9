"""The full-data average loss of a model as a pure function of some of its parameters.

:math:`L(\\theta) = \\sum_b \\frac{n_b}{N} \\ell_b(\\theta)` for batches of sizes :math:`n_b` whose loss
:math:`\\ell_b` is a mean (``reduction="mean"``, the default of torch losses), so the average is exact
whatever the batching.
Gradients go through ``torch.func`` on a ``functional_call`` of the model. A Hessian-vector product
:math:`Hv = \\nabla_\\theta (\\nabla \\ell_b(\\theta)^\\top v)` needs the forward pass and the backward
graph of :math:`\\nabla \\ell_b`, neither of which depends on :math:`v`: they are built once
(``torch.autograd.grad(..., create_graph=True)``, PyHessian's retained graph) for the batches that fit
``cache_bytes``, grouped into graphs of their weighted loss (a large model builds one gradient however
many batches, and keeps its graph, not its values), so each product is a backward pass through them (about
1.5-2.2x a gradient instead of the 2.4-3.7x of recomputing them; ``python -m runners.bench hessian``).
Batches beyond the budget are recomputed on every product, forward-over-reverse (``jvp(grad(L))``), which
keeps no graph at all; a block of vectors shares one graph per such batch, built for the block.
Under ``torch.distributed`` each rank keeps its :func:`~landscape.distributed.shard` of the batches and
the weighted sums are all-reduced, so every rank holds the exact full-data value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad, jvp

from landscape._checks import check_deterministic_mode, check_finite_model, check_hessian_batches, check_mean_loss
from landscape._precision import full_float32
from landscape._types import Batches, LossFn, Params
from landscape.distributed import all_reduce_sum, reduce_floats, shard
from landscape.evaluation import Evaluation, _local_sums, _reduce_evaluation

DEFAULT_CACHE_BYTES = 2**30
"""Graph bytes an :class:`Objective` keeps for its products by default, a fixed amount so that memory use
does not depend on what else the machine is doing. It counts the activations of the cached batches and a
gradient (a vector of the parameters' size) per graph, which exists while the graph is built: 1 GiB holds
about 28,000 MNIST-1D examples for the 64-channel CNN (3.6 MB per 100) and 40,000 for its eFCN (2.6 MB per
100, plus its 17 MB gradient); for the 126.8M-parameter AlexNet eFCN, its 0.47 GiB gradient and a few small
batches."""


# Activations below which consecutive batches share one graph (see Objective.graphs).
_GROUP_BYTES = 2**22


@dataclass(frozen=True)
class _Graph:
    """One batch's gradient with the graph that differentiates it again, and the bytes that graph keeps."""

    leaves: tuple[torch.Tensor, ...]
    grads: tuple[torch.Tensor, ...]
    nbytes: int

    def add_hvp(self, tangent: tuple[torch.Tensor, ...], totals: list[torch.Tensor]) -> None:
        """Add :math:`\\nabla (g^\\top v)` to ``totals`` (one tensor per leaf) in place: one backward pass, the graph kept.

        The totals stand in as the leaves' ``.grad`` during the pass, so autograd adds each parameter's
        product into its total as soon as it is done and frees it: no product of the operator's size
        exists besides the totals (``torch.autograd.grad`` returned one whole, measured 1 vector more at
        the peak of a product, 0.47 GiB on the AlexNet eFCN). The sums are the same as adding that result.
        """
        # A gradient that does not depend on the parameters (a loss linear in them) has no graph: its rows
        # of the Hessian are zero, and so is what is added.
        live = [(g, v) for g, v in zip(self.grads, tangent) if g.requires_grad]
        if not live:
            return
        outputs, directions = zip(*live)
        for leaf, total in zip(self.leaves, totals):
            leaf.grad = total
        try:
            torch.autograd.backward(outputs, directions, retain_graph=True, inputs=self.leaves)
        finally:
            for leaf, total in zip(self.leaves, totals):
                # Autograd adds into an existing .grad in place; should a torch replace it instead, the sum is kept.
                if leaf.grad is not None and leaf.grad is not total:
                    total.copy_(leaf.grad)
                leaf.grad = None


class Objective:
    """Average loss over ``batches`` as a function of the parameters named in ``moving``.

    The other parameters and the buffers are held fixed at the model's values. Batches are moved to the
    parameters' device once, because probes iterate over them hundreds of times. This is the one place
    a probe shards its batches: every method works on ``self.batches`` (this rank's) and reduces.
    """

    def __init__(
        self, model: nn.Module, loss_fn: LossFn, batches: Batches, *, moving: tuple[str, ...], cache_bytes: int = DEFAULT_CACHE_BYTES
    ) -> None:
        check_deterministic_mode(model)
        check_finite_model(model)  # every curvature and basin probe starts here: refuse a diverged model once
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
        self.cache_bytes = cache_bytes
        self._graphs: list[_Graph] | None = None  # built by the first product
        self._cached: list[int] = []  # indices of the batches in the cached graph

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

    def _graph(self, indices: list[int]) -> _Graph:
        """The gradient of :math:`\\sum_{b} w_b \\ell_b` over the batches ``indices`` with ``create_graph``.

        One graph for all of them: its gradient is one vector whatever the number of batches, and a
        product is one backward pass. Its size counts that gradient (built, then freed) and what autograd
        saves beyond the parameters and the data.
        """
        leaves = {name: p.detach().requires_grad_() for name, p in self.point.items()}
        data = [t for i in indices for t in self.batches[i]]
        shared = {t.untyped_storage().data_ptr() for t in (*leaves.values(), *self.fixed.values(), *data)}
        saved: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            if storage.data_ptr() not in shared:
                saved[storage.data_ptr()] = storage.nbytes()
            return t

        with full_float32(), torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = sum(self.weights[i] * self._batch_loss(leaves, *self.batches[i]) for i in indices)
            grads = torch.autograd.grad(loss, tuple(leaves.values()), create_graph=True, allow_unused=True, materialize_grads=True)
        # A product reads the gradient's graph, not its values (autograd.backward checks only the shapes of its
        # roots): storages that no saved tensor shares are freed, one vector of the parameters' size fewer while
        # the graph is cached (0.47 GiB on the AlexNet eFCN). The size counts them: they exist while it is built.
        kept = saved.keys() | shared
        freed = [g.untyped_storage() for g in grads if g.untyped_storage().data_ptr() not in kept]
        for g in grads:
            pack(g)
        for storage in freed:
            storage.resize_(0)
        return _Graph(tuple(leaves.values()), grads, sum(saved.values()))

    def graphs(self) -> list[_Graph]:
        """The cached graphs, over groups of the :attr:`cached_batches`, built on the first call.

        The first batch's graph measures a gradient's bytes and the activations per example; the batches
        that fit ``cache_bytes`` at that rate, in order, are cached, and the rest recomputed at each
        product. Consecutive batches share a graph while their activations stay under
        max(a gradient, :data:`_GROUP_BYTES`): a large model then builds one gradient for all its
        batches, while a small one keeps a graph per batch, whose backward pass stays in the CPU caches
        (one graph of ten 100-example batches of the CNN was 1.4x slower than ten graphs).
        """
        if self._graphs is None:
            self._graphs, self._cached = [], []
            if self.cache_bytes > 0:
                first = self._graph([0])
                gradient = sum(p.numel() * p.element_size() for p in self.point.values())
                per_example = max(first.nbytes - gradient, 0) / len(self.batches[0][0])
                cap = max(gradient, _GROUP_BYTES)
                groups, used, group_bytes = [], 0.0, 0.0
                for i, (x, _) in enumerate(self.batches):
                    size = per_example * len(x)
                    fresh = not groups or group_bytes + size > cap
                    if used + size + (gradient if fresh else 0) > self.cache_bytes:
                        break
                    if fresh:
                        groups.append([])
                        group_bytes = 0.0
                        used += gradient
                    groups[-1].append(i)
                    group_bytes += size
                    used += size
                    self._cached.append(i)
                # Unless it is a group of its own, the first graph goes before the others are built: the group
                # that holds its batch builds it again.
                first = first if groups[:1] == [[0]] else None
                for group in groups:
                    self._graphs.append(first if group == [0] else self._graph(group))
        return self._graphs

    @property
    def cached_batches(self) -> list[int]:
        """Indices of the batches whose graph is cached (builds it)."""
        self.graphs()
        return list(self._cached)

    @property
    def cached_bytes(self) -> int:
        """Bytes held by the cached graph (0 before the first product)."""
        return sum(graph.nbytes for graph in self._graphs or ())

    def hvp(self, tangent: Params) -> dict[str, torch.Tensor]:
        """:math:`H v` at the model's point for a tangent ``{name: tensor}`` over the moving names."""
        return self.hvps([tangent])[0]

    def hvps(self, tangents: list[Params], *, out: list[dict[str, torch.Tensor]] | None = None) -> list[dict[str, torch.Tensor]]:
        """:math:`H v` for each tangent; the rows share each batch's graph, built for them if not cached.

        ``out`` (one zeroed ``{name: tensor}`` per tangent, e.g. views of a flat vector) receives the
        products, which spares a copy of the operator's size per product.
        """
        names = tuple(self.point)
        rows = [tuple(t[name].to(self.point[name]) for name in names) for t in tangents]
        if out is None:
            out = [{name: torch.zeros_like(p) for name, p in self.point.items()} for _ in rows]
        totals = [[target[name] for name in names] for target in out]
        cached = self.graphs()
        work = [(graph, 1.0, None) for graph in cached]  # a cached graph's loss is already weighted
        work += [(None, w, i) for i, w in enumerate(self.weights) if i not in self._cached]
        for graph, w, index in work:
            with full_float32():
                if graph is None and len(rows) > 1:
                    graph, w = self._graph([index]), 1.0  # shared by the block, freed after it
                for total, row in zip(totals, rows):
                    if graph is not None:
                        graph.add_hvp(row, total)  # its loss is weighted (w is 1)
                        continue
                    product = self._batch_hvp(dict(zip(names, row)), *self.batches[index])
                    for acc, name in zip(total, names):
                        acc.add_(product[name], alpha=w)
                    del product
            graph = None
        for target in out:
            for name, value in all_reduce_sum(target).items():
                if value is not target[name]:  # summed over ranks into a new tensor
                    target[name].copy_(value)
        return out
