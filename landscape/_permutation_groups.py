"""Permutation groups of hidden units, derived from a model's traced graph (no hand-written specification).

A network's function is unchanged when the output channels of a layer are permuted together with
everything that reads or normalises them. :func:`permutation_spec` traces the model with
``torch.fx`` and propagates a *label* (the group of the channel axis, dim 1) through the graph:

* every Conv / Linear / eLCN / eFCN layer (and each ``LocallyConnected`` / ``EmbeddedDense``, kept as
  leaves) starts a group on its output channels and reads its input's group on its input axis; a
  flattened ``(C, *positions)`` input is read blockwise, so a channel permutation of a CNN moves whole
  blocks of the classifier's (or of an eFCN layer's) columns;
* BatchNorm permutes its affine parameters and running statistics with its input; element-wise
  activations, dropout, pooling, ``flatten(1)`` and ``view(N, -1)`` pass the label through;
* a residual addition of two labelled tensors ties their groups (union-find);
* anything else that reads a labelled tensor (an unknown op, concatenation, a grouped conv), and the
  network's output, *fixes* the group: its permutation stays the identity, so the function is kept
  whatever the graph holds.

Groups are named after the first layer (in graph order) that starts one of their members, so the
same architecture in another space (a CNN and its eFCN keep module names) has the same group names.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from embeddings import EmbeddedDense
from embeddings.layers import _LocallyConnectedNd

__all__ = ["Axis", "PermutationSpec", "permutation_spec", "permute_state"]

_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Hardtanh,
    nn.Hardswish, nn.Mish, nn.Identity, nn.Dropout, nn.AlphaDropout,
)
_CHANNEL_MODULES = (  # act on each channel of (N, C, *positions) alone
    nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
)
_ELEMENTWISE_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.gelu, F.silu, F.elu, F.leaky_relu, torch.tanh, torch.sigmoid, F.dropout}
_CHANNEL_FUNCTIONS = {
    F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d,
}
_PASS_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "detach"}
_ADDITIONS = {operator.add, operator.iadd, torch.add, operator.sub, torch.sub}
_SCALINGS = {operator.mul, operator.imul, torch.mul, operator.truediv}
# Reading these never mixes units: no group is fixed by asking for a tensor's size.
_SHAPE_QUERIES = {"size", "dim", "numel"}


@dataclass(frozen=True)
class Axis:
    """Where a group permutes one tensor: ``tensor.reshape(view)`` permuted along ``axis``."""

    key: str
    view: tuple[int, ...]
    axis: int


@dataclass
class PermutationSpec:
    """The permutation groups of a model.

    Attributes:
        sizes: ``{group: number of units}``, one entry per free (non-fixed) group.
        axes: ``{group: [Axis, ...]}``, every parameter and buffer axis the group permutes.
        nodes: ``{group: [(node name, units_last), ...]}``, the traced tensors holding the group's units
            that a layer reads (after activation and pooling), where activation matching compares the
            two networks; the units are on the last dim when ``units_last``, else on dim 1 (as channels,
            or flattened channel-major).
    """

    sizes: dict[str, int] = field(default_factory=dict)
    axes: dict[str, list[Axis]] = field(default_factory=dict)
    nodes: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)


class _Tracer(fx.Tracer):
    # The relaxed layers check their input shape in Python, which symbolic tracing cannot evaluate.
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (EmbeddedDense, _LocallyConnectedNd)) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module) -> fx.GraphModule:
    """The model as a ``torch.fx`` graph, or one line saying why it cannot be traced."""
    try:
        graph = _Tracer().trace(model)
    except Exception as err:  # fx raises many types (TraceError, TypeError, ...) for data-dependent code
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"cannot derive permutation groups of {type(model).__name__}: torch.fx could not trace it ({reason}); "
            "alignment needs a forward pass without data-dependent Python control flow"
        ) from None
    return fx.GraphModule(model, graph)


# Where a tensor holds its group's units: "channels" dim 1 of (N, C, *positions) (a conv's output);
# "features" dim 1 of (N, C * block), flattened channel-major from channels; "last" the last dim (a Linear's output).
CHANNELS, FEATURES, LAST = "channels", "features", "last"


@dataclass(frozen=True)
class _Label:
    group: int
    kind: str


class _Builder:
    """Union-find over groups, with the axes each group permutes and whether it is fixed."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.fixed: list[bool] = []
        self.creator: list[str] = []
        self.axes: list[list[Axis]] = []
        self.nodes: list[list[tuple[str, bool]]] = []

    def new(self, size: int, creator: str) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.fixed.append(False)
        self.creator.append(creator)
        self.axes.append([])
        self.nodes.append([])
        return len(self.parent) - 1

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a != b:
            if self.size[a] != self.size[b]:
                self.fix(a)
                self.fix(b)
                return a
            first, second = min(a, b), max(a, b)  # the earlier group names the union
            self.parent[second] = first
            self.fixed[first] = self.fixed[first] or self.fixed[second]
            self.axes[first] += self.axes[second]
            self.nodes[first] += self.nodes[second]
        return self.find(a)

    def fix(self, g: int) -> None:
        self.fixed[self.find(g)] = True

    def add_axis(self, g: int, key: str, shape: torch.Size, view: tuple[int, ...], axis: int) -> None:
        if view[axis] != self.size[self.find(g)] or torch.Size(view).numel() != shape.numel():
            self.fix(g)  # the layer does not split into this group's units; keep it as it is
        else:
            self.axes[self.find(g)].append(Axis(key, tuple(view), axis))


def _prefix(target: str) -> str:
    return f"{target}." if target else ""


def _layer_axes(module: nn.Module, target: str, builder: _Builder, label: _Label | None) -> _Label | None:
    """Axes of a Conv / Linear / eLCN / eFCN layer; returns the label of its output."""
    p = _prefix(target)
    weight, bias = module.weight, module.bias
    linear = isinstance(module, nn.Linear)
    geometry = module if linear else getattr(module, "geometry", module)
    out_ch, in_ch = (module.out_features, module.in_features) if linear else (geometry.out_channels, geometry.in_channels)
    # A Linear reads the last dim (units of a Linear, or flattened channels); a conv reads channels.
    reads = (LAST, FEATURES) if linear else (CHANNELS,)
    grouped = getattr(geometry, "groups", 1) != 1
    if label is not None and (label.kind not in reads or grouped or in_ch % builder.size[builder.find(label.group)]):
        builder.fix(label.group)  # e.g. a Linear on the positions of a conv's output, a grouped conv
        return None
    if grouped:  # grouped convs tie input and output units in blocks: not permuted
        return None
    if label is not None:
        c = builder.size[builder.find(label.group)]
        # The input units are the major index of each row (channel-major after flatten).
        builder.add_axis(label.group, p + "weight", weight.shape, (weight.shape[0], c, weight[0].numel() // c), 1)
    group = builder.new(out_ch, target)
    builder.add_axis(group, p + "weight", weight.shape, (out_ch, weight.numel() // out_ch), 0)
    if bias is not None:
        builder.add_axis(group, p + "bias", bias.shape, (out_ch, bias.numel() // out_ch), 0)
    return _Label(group, LAST if linear else CHANNELS)


def _norm_axes(module: nn.Module, target: str, builder: _Builder, label: _Label) -> _Label | None:
    """BatchNorm's affine parameters and running statistics follow its input's units (blockwise when flattened)."""
    c = builder.size[builder.find(label.group)]
    if label.kind == LAST and module.num_features != c:  # BatchNorm normalises dim 1, these units are on the last
        builder.fix(label.group)
        return None
    for name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
        if tensor.dim() == 1:  # not the 0-d batch counter
            builder.add_axis(label.group, _prefix(target) + name, tensor.shape, (c, max(tensor.numel() // c, 1)), 0)
    return label


def _is(label: _Label | None, kind: str) -> bool:
    return label is not None and label.kind == kind


def _has_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def _flattens(node: fx.Node) -> bool:
    """Whether a call keeps dim 0 and flattens all others into dim 1 (channel-major)."""
    args = node.args[1:]
    if node.op == "call_method" and node.target in ("view", "reshape"):
        return len(args) == 2 and args[1] == -1
    start = args[0] if args else node.kwargs.get("start_dim", 0)
    end = args[1] if len(args) > 1 else node.kwargs.get("end_dim", -1)
    return start == 1 and end == -1


def permutation_spec(model: nn.Module) -> PermutationSpec:
    """The free permutation groups of ``model``'s hidden units (see the module docstring)."""
    graph = trace(model)
    modules = dict(graph.named_modules())
    builder = _Builder()
    labels: dict[fx.Node, _Label | None] = {}
    called: dict[str, list[int]] = {}

    def fix_inputs(node: fx.Node) -> None:
        for arg in node.all_input_nodes:
            if labels.get(arg) is not None:
                builder.fix(labels[arg].group)

    def flattened(node: fx.Node, label: _Label | None) -> _Label | None:
        # Channels become blocks of features; features (2-D) stay; units of unknown rank on the last dim would move.
        if label is not None and label.kind == LAST:
            return fix_inputs(node)
        return _Label(label.group, FEATURES) if label is not None else None

    for node in graph.graph.nodes:
        first = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        label = labels.get(first) if first is not None else None
        out: _Label | None = None
        if node.op == "call_module" and node.target in called and _has_state(modules[node.target]):
            # A layer applied twice would be permuted once per call: keep both calls' units as they are.
            for g in called[node.target]:
                builder.fix(g)
            fix_inputs(node)
        elif node.op == "call_module":
            module = modules[node.target]
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, EmbeddedDense, _LocallyConnectedNd)):
                if label is not None:  # what a layer reads: the hidden units after activation and pooling
                    builder.nodes[builder.find(label.group)].append((first.name, label.kind == LAST))
                out = _layer_axes(module, node.target, builder, label)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm) and label is not None:
                out = _norm_axes(module, node.target, builder, label)
            elif isinstance(module, _ELEMENTWISE_MODULES) or (isinstance(module, _CHANNEL_MODULES) and _is(label, CHANNELS)):
                out = label
            elif isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1:
                out = flattened(node, label)
            else:
                fix_inputs(node)
        elif node.op == "call_function" and node.target in _ADDITIONS:
            a, b = (labels.get(x) if isinstance(x, fx.Node) else None for x in node.args[:2])
            tensors = [x for x in node.args[:2] if isinstance(x, fx.Node)]
            if a is not None and b is not None and a.kind == b.kind:
                out = _Label(builder.union(a.group, b.group), a.kind)
            elif len(tensors) == 1 and (a or b) is not None:  # plus a Python number
                out = a or b
            else:
                fix_inputs(node)
        elif node.op == "call_function" and node.target in _SCALINGS:
            tensors = [x for x in node.args[:2] if isinstance(x, fx.Node)]
            if len(tensors) == 1:
                out = labels.get(tensors[0])
            else:
                fix_inputs(node)
        elif node.op in ("call_function", "call_method") and node.target in (torch.flatten, "flatten", "view", "reshape"):
            out = flattened(node, label) if _flattens(node) else fix_inputs(node)
        elif (node.op == "call_function" and node.target in _ELEMENTWISE_FUNCTIONS) or (
                node.op == "call_method" and node.target in _PASS_METHODS) or (
                node.op == "call_function" and node.target in _CHANNEL_FUNCTIONS and _is(label, CHANNELS)):
            out = label
        elif (node.op == "call_method" and node.target in _SHAPE_QUERIES) or (
                node.op == "call_function" and node.target is getattr):
            out = None
        elif node.op in ("call_function", "call_method", "output"):
            fix_inputs(node)  # the network's output included: its units are never permuted
        labels[node] = out
        if node.op == "call_module":
            called[node.target] = [x.group for x in (label, out) if x is not None]
    spec = PermutationSpec()
    for g in range(len(builder.parent)):
        if builder.find(g) == g and not builder.fixed[g] and builder.axes[g]:
            name = builder.creator[g]
            spec.sizes[name], spec.axes[name], spec.nodes[name] = builder.size[g], builder.axes[g], builder.nodes[g]
    return spec


def permute_axis(tensor: torch.Tensor, axis: Axis, perm: torch.Tensor) -> torch.Tensor:
    """``tensor`` with the units of one axis reordered: unit ``i`` of the result is unit ``perm[i]``."""
    return tensor.reshape(axis.view).index_select(axis.axis, perm.to(tensor.device)).reshape(tensor.shape)


def permute_state(state: Mapping[str, torch.Tensor], spec: PermutationSpec,
                  perms: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with every group of ``perms`` applied to every axis it permutes (others unchanged).

    Keys the state lacks are skipped, so a dict of parameters alone (no buffers) can be permuted too.
    """
    permuted = dict(state)
    for group, perm in perms.items():
        for axis in spec.axes[group]:
            if axis.key in permuted:
                permuted[axis.key] = permute_axis(permuted[axis.key], axis, perm)
    return permuted
