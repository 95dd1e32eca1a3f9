r"""Permutation alignment of two independently trained networks (Git Re-Basin, Ainsworth et al., ICLR 2023).

Two networks trained from different seeds compute similar functions with their hidden units in
different orders, so the straight line between them crosses a barrier that says more about the
labels of the units than about the landscape. :func:`align` returns a copy of ``model_b`` whose
hidden units are permuted to match ``model_a``'s; it computes exactly the function ``model_b`` did.

* ``method="weights"`` (weight matching, Ainsworth et al., Sec. 3.2) maximises

  .. math::

      \sum_\ell \big\langle W^a_\ell,\; P_\ell\, W^b_\ell\, P_{\ell-1}^\top \big\rangle

  over the permutations :math:`P` of every group by coordinate descent: in a random order (``seed``)
  each group's permutation is the linear assignment
  (:func:`scipy.optimize.linear_sum_assignment`) on the summed similarities of every parameter axis it
  permutes, the other groups held fixed; it stops after a pass in which no group improved.
* ``method="activations"`` (activation matching, Sec. 3.1) runs both networks on ``batches`` and
  solves one assignment per group on the summed Pearson correlations of its units in every tensor of
  them that a layer reads (after activation and pooling; positions count as samples).

The groups come from the traced graph (:mod:`landscape._permutation_groups`): no specification is
written by hand, residual additions tie their layers, BatchNorm running statistics follow their units,
and the output units never move. A CNN facing its eLCN/eFCN is matched in the larger space (channel
permutations commute with the embedding, so the CNN's groups are the eFCN's), then permuted in its own.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import fx, nn

from landscape._checks import check_positive_int, check_training_batches
from landscape._endpoints import align_endpoints
from landscape._permutation_groups import Axis, PermutationSpec, permutation_spec, permute_axis, permute_state, trace
from landscape._types import Batches

__all__ = ["AlignResult", "align"]

# A pass "improves" a group only above float64 rounding of the summed similarities.
_REL_TOL = 1e-12


@dataclass(frozen=True)
class AlignResult:
    """A permuted copy of ``model_b`` and how it was found.

    Attributes:
        model: ``model_b`` with its hidden units reordered (same space, same function).
        permutations: ``{group: perm}``, groups named after the first layer of each; unit ``i`` of the
            aligned model is unit ``perm[i]`` of ``model_b``.
        method: ``"weights"`` or ``"activations"``.
        iterations: coordinate-descent passes over the groups (1 for activation matching).
        converged: the last pass changed no permutation (always True for activation matching).
        similarity_before, similarity_after: cosine similarity of the two parameter vectors (in the
            common space) before and after alignment; 1 means ``model_b`` is a permutation of ``model_a``.
    """

    model: nn.Module
    permutations: dict[str, torch.Tensor]
    method: str
    iterations: int
    converged: bool
    similarity_before: float
    similarity_after: float


def _cosine(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    dot = sum(float((a[k].double() * b[k].double()).sum()) for k in a)
    norm_a = sum(float(a[k].double().pow(2).sum()) for k in a) ** 0.5
    norm_b = sum(float(b[k].double().pow(2).sum()) for k in a) ** 0.5
    return dot / (norm_a * norm_b) if norm_a and norm_b else 0.0


def _units_first(tensor: torch.Tensor, axis: Axis, size: int) -> torch.Tensor:
    return tensor.reshape(axis.view).movedim(axis.axis, 0).reshape(size, -1)


def _weight_matching(params_a: Mapping[str, torch.Tensor], params_b: Mapping[str, torch.Tensor], spec: PermutationSpec, *,
                     seed: int, max_iter: int) -> tuple[dict[str, torch.Tensor], int, bool]:
    """Coordinate descent over the groups; returns ``(perms, passes, converged)``."""
    # float64 where the parameters live (a GPU if there): the "improved" test compares sums of products.
    params_a = {k: v.detach().double() for k, v in params_a.items()}
    params_b = {k: v.detach().double() for k, v in params_b.items()}
    device = next(iter(params_a.values())).device
    axes_of: dict[str, list[tuple[str, Axis]]] = {}
    for group, axes in spec.axes.items():
        for axis in axes:
            if axis.key in params_a:  # buffers (running statistics) follow the units but are not matched
                axes_of.setdefault(axis.key, []).append((group, axis))
    perms = {group: torch.arange(size, device=device) for group, size in spec.sizes.items()}
    rng = np.random.default_rng(seed)
    groups = list(spec.sizes)
    for passes in range(1, max_iter + 1):
        improved = False
        for group in rng.permutation(groups):
            size = spec.sizes[group]
            similarity = torch.zeros(size, size, dtype=torch.float64, device=device)
            for key, entries in axes_of.items():
                for g, axis in entries:
                    if g != group:
                        continue
                    b = params_b[key]
                    for other_group, other in entries:  # the other axes of this tensor, as currently permuted
                        if other is not axis:
                            b = permute_axis(b, other, perms[other_group])
                    similarity += _units_first(params_a[key], axis, size) @ _units_first(b, axis, size).T
            similarity = similarity.cpu()
            _, cols = linear_sum_assignment(similarity.numpy(), maximize=True)
            rows = torch.arange(size)
            old, new = float(similarity[rows, perms[group].cpu()].sum()), float(similarity[rows, cols].sum())
            if new > old + _REL_TOL * max(1.0, abs(old)):
                perms[group] = torch.as_tensor(cols, dtype=torch.long, device=device)
                improved = True
        if not improved:
            break
    return {g: p.cpu() for g, p in perms.items()}, passes, not improved


class _Recorder(fx.Interpreter):
    """Runs a traced model and keeps the outputs of the named nodes."""

    def __init__(self, graph: fx.GraphModule, wanted: set[str]) -> None:
        super().__init__(graph)
        self.wanted, self.seen = wanted, {}

    def run_node(self, node: fx.Node):
        out = super().run_node(node)
        if node.name in self.wanted:
            self.seen[node.name] = out.detach()
        return out


def _units_as_columns(activation: torch.Tensor, size: int, units_last: bool) -> torch.Tensor:
    """``(samples, units)``: batch and positions (or a flattened unit's block) are samples."""
    if units_last:
        return activation.double().reshape(-1, size)
    return activation.double().reshape(activation.shape[0], size, -1).movedim(1, -1).reshape(-1, size)


def _activation_matching(model_a: nn.Module, model_b: nn.Module, spec_a: PermutationSpec, spec_b: PermutationSpec,
                         batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One assignment per group on the summed correlations of its units over the shared traced tensors."""
    nodes = {g: sorted(set(spec_a.nodes[g]) & set(spec_b.nodes[g])) for g in spec_b.sizes}
    wanted = {name for names in nodes.values() for name, _ in names}
    device = next(model_a.parameters()).device
    runners = []
    for model in (model_a, model_b):
        graph = trace(copy.deepcopy(model)).eval()  # a copy: eval() must not change the caller's model
        runners.append(_Recorder(graph, wanted))
    stats: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for x, _ in batches:
            for runner in runners:
                runner.seen = {}
                runner.run(x.to(device))
            for group, names in nodes.items():
                size = spec_b.sizes[group]
                for name, units_last in names:
                    a = _units_as_columns(runners[0].seen[name], size, units_last).cpu()
                    b = _units_as_columns(runners[1].seen[name], size, units_last).cpu()
                    moments = [torch.tensor(float(len(a)), dtype=torch.float64), a.sum(0), b.sum(0),
                               a.pow(2).sum(0), b.pow(2).sum(0), a.T @ b]
                    acc = stats.setdefault(f"{group}\0{name}", [torch.zeros_like(m) for m in moments])
                    for total, m in zip(acc, moments):
                        total += m
    perms = {}
    for group, names in nodes.items():
        size = spec_b.sizes[group]
        correlation = torch.zeros(size, size, dtype=torch.float64)
        for name, _ in names:
            n, sa, sb, saa, sbb, sab = stats[f"{group}\0{name}"]
            mean_a, mean_b = sa / n, sb / n
            std_a = (saa / n - mean_a**2).clamp(min=0).sqrt()
            std_b = (sbb / n - mean_b**2).clamp(min=0).sqrt()
            # A dead unit (zero variance) correlates with nothing; eps keeps it from dividing by zero.
            correlation += (sab / n - torch.outer(mean_a, mean_b)) / (torch.outer(std_a, std_b) + 1e-12)
        _, cols = linear_sum_assignment(correlation.numpy(), maximize=True)
        perms[group] = torch.as_tensor(cols, dtype=torch.long)
    return perms


def align(
    model_a: nn.Module,
    model_b: nn.Module,
    *,
    method: Literal["weights", "activations"] = "weights",
    batches: Batches | None = None,
    seed: int = 0,
    max_iter: int = 100,
) -> AlignResult:
    """Permute ``model_b``'s hidden units to match ``model_a``'s, keeping ``model_b``'s function.

    Args:
        model_a, model_b: the two endpoints (one architecture; one may be the other's eLCN/eFCN);
            neither is modified.
        method: ``"weights"`` (weight matching) or ``"activations"`` (activation matching on ``batches``).
        batches: ``(x, y)`` batches whose inputs drive activation matching (ignored by weight matching).
        seed: order of the groups in every coordinate-descent pass.
        max_iter: at most this many passes over the groups (weight matching).

    Returns:
        An :class:`AlignResult`; ``result.model`` is the permuted copy of ``model_b``.

    Raises:
        ValueError: one line, for an unknown method, activation matching without batches, endpoints of
            different architectures, or a model ``torch.fx`` cannot trace.

    Example:
        >>> a, b = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> result = align(a, b)
        >>> x = torch.randn(5, 3)
        >>> torch.allclose(result.model(x), b(x), atol=1e-6), sorted(result.model[0].weight.shape)
        (True, [3, 4])
    """
    if method not in ("weights", "activations"):
        raise ValueError(f"method must be 'weights' or 'activations', got {method!r}")
    if method == "activations" and batches is None:
        raise ValueError("method='activations' needs batches=[(x, y), ...] to compute activations on; or use method='weights'")
    max_iter = check_positive_int("max_iter", max_iter)
    common_a, common_b, _ = align_endpoints(model_a, model_b)
    spec = permutation_spec(common_b)
    spec_b = spec if common_b is model_b else permutation_spec(model_b)
    if spec_b.sizes != spec.sizes:
        raise ValueError(f"the permutation groups of model B ({spec_b.sizes}) differ from those in the common space "
                         f"({spec.sizes}); align models of one architecture")
    params_a = {k: v.detach() for k, v in common_a.named_parameters()}
    params_b = {k: v.detach() for k, v in common_b.named_parameters()}
    if method == "weights":
        perms, iterations, converged = _weight_matching(params_a, params_b, spec, seed=seed, max_iter=max_iter)
    else:
        spec_a = permutation_spec(model_a)
        perms = _activation_matching(model_a, model_b, spec_a, spec_b, check_training_batches(batches))
        iterations, converged = 1, True
    aligned = copy.deepcopy(model_b)
    with torch.no_grad():
        aligned.load_state_dict(permute_state(model_b.state_dict(), spec_b, perms))
    return AlignResult(
        model=aligned,
        permutations=perms,
        method=method,
        iterations=iterations,
        converged=converged,
        similarity_before=_cosine(params_a, params_b),
        similarity_after=_cosine(params_a, permute_state(params_b, spec, perms)),
    )
