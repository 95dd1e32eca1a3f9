r"""Exact embeddings CNN -> eLCN -> eFCN and the projection back onto the CNN subspace.

d'Ascoli et al. (2019) write a CNN as an FCN with two constraints, locality and weight sharing. The
embedding :math:`\Phi` relaxes them while keeping the function, :math:`f(\theta) = f(\Phi(\theta))`:

* ``to_elcn`` drops weight sharing: each output position gets its own copy of the filter;
* ``to_efcn`` drops locality too: each conv becomes the dense matrix of the linear map it computes
  on the (unpadded) flattened input; entries outside the receptive fields ("off-local" blocks) start
  at zero and are free to train. ``to_efcn`` of an eLCN equals ``to_efcn`` of the CNN;
* ``to_cnn`` is the orthogonal projection back: each shared weight becomes the mean of its copies.

Only conv layers change; every other layer (pooling, BatchNorm, dropout, linear, reshapes in custom
``forward`` code) is kept because relaxed layers take and return tensors of the conv's shapes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ._blocks import conv_as_local, dense_to_conv, local_to_conv, to_dense
from ._checks import resolve_input_shape
from ._tracing import find_relaxable_layers, layer_geometry
from .geometry import ConvGeometry
from .layers import EmbeddedDense, LocallyConnected1d, LocallyConnected2d, _LocallyConnectedNd, _uniform_init
from .memory import check_budget

__all__ = ["to_efcn", "to_elcn", "to_cnn", "fcn_of_same_size", "embed_parameters", "model_space"]


def _local_weight(module: nn.Module, geometry: ConvGeometry) -> torch.Tensor:
    return conv_as_local(module.weight, geometry) if isinstance(module, nn.modules.conv._ConvNd) else module.weight


def _position_bias(module: nn.Module, geometry: ConvGeometry) -> torch.Tensor | None:
    """The bias per output unit, shape (C_out, *out_size), or None."""
    if module.bias is None:
        return None
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.bias.view(-1, *(1,) * geometry.dims).expand(geometry.out_shape)
    return module.bias.view(geometry.out_shape)


def _as_parameter(value: torch.Tensor, like: nn.Parameter) -> nn.Parameter:
    return nn.Parameter(value.contiguous(), requires_grad=like.requires_grad)


def _dense_layer(module: nn.Module, geometry: ConvGeometry) -> EmbeddedDense:
    bias = _position_bias(module, geometry)
    return EmbeddedDense.from_weight(
        geometry, _as_parameter(to_dense(module.weight, geometry), module.weight),
        None if bias is None else _as_parameter(bias.reshape(-1), module.bias),
    )


def _local_layer(module: nn.Module, geometry: ConvGeometry) -> _LocallyConnectedNd:
    cls = LocallyConnected1d if geometry.dims == 1 else LocallyConnected2d
    bias = _position_bias(module, geometry)
    return cls.from_weight(
        geometry, _as_parameter(_local_weight(module, geometry), module.weight),
        None if bias is None else _as_parameter(bias, module.bias),
    )


def _replace(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    if not name:
        return new
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
    return model


def _relax(model: nn.Module, input_shape, target: str, max_bytes: int | None, device) -> nn.Module:
    input_shape = resolve_input_shape(model, input_shape)
    layers = find_relaxable_layers(model, input_shape)
    if target == "elcn" and any(isinstance(layer.module, EmbeddedDense) for layer in layers):
        raise ValueError(
            "to_elcn cannot relax a model that already has dense embedded (eFCN) layers: locality is gone there; "
            "project it back with to_cnn first if you want an eLCN"
        )
    check_budget(model, layers, target, max_bytes, device)
    relaxed = copy.deepcopy(model)
    if device is not None:
        relaxed = relaxed.to(device)
    with torch.no_grad():
        for layer in layers:
            module = relaxed.get_submodule(layer.name) if layer.name else relaxed
            geometry = layer_geometry(layer)
            if target == "efcn" and not isinstance(module, EmbeddedDense):
                relaxed = _replace(relaxed, layer.name, _dense_layer(module, geometry))
            elif target == "elcn" and not isinstance(module, _LocallyConnectedNd):
                relaxed = _replace(relaxed, layer.name, _local_layer(module, geometry))
    relaxed.space = target
    relaxed.input_shape = input_shape
    return relaxed


def to_efcn(model: nn.Module, input_shape: Sequence[int] | None = None, *, max_bytes: int | None = None, device=None) -> nn.Module:
    """Equivalent fully-connected network: every conv (or eLCN layer) becomes its dense matrix.

    Args:
        model: a CNN, an eLCN, or a model mixing them; it is not modified.
        input_shape: one input's shape without batch, ``(C, L)`` or ``(C, H, W)``; defaults to the
            ``input_shape`` recorded by :func:`~embeddings.build_model`.
        max_bytes: refuse to build a result whose parameters exceed this many bytes (default: half of
            the free memory of the target device; see :func:`~embeddings.estimate_memory`).
        device: where to build the result (default: where the model is), e.g. straight on a GPU.

    Returns:
        A new module computing the same function to float precision, with ``space == "efcn"``.

    Example:
        >>> import torch
        >>> cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3), torch.nn.Flatten())
        >>> efcn = to_efcn(cnn, (1, 4, 4))
        >>> tuple(efcn[0].weight.shape)
        (4, 16)
        >>> x = torch.randn(2, 1, 4, 4)
        >>> torch.allclose(efcn(x), cnn(x), atol=1e-6)
        True
    """
    return _relax(model, input_shape, "efcn", max_bytes, device)


def to_elcn(model: nn.Module, input_shape: Sequence[int] | None = None, *, max_bytes: int | None = None, device=None) -> nn.Module:
    """Equivalent locally-connected network: every conv loses weight sharing but keeps its receptive fields.

    Arguments as in :func:`to_efcn`; the result has ``space == "elcn"``.
    """
    return _relax(model, input_shape, "elcn", max_bytes, device)


def to_cnn(model: nn.Module) -> nn.Module:
    """Nearest CNN in L2: project every eFCN / eLCN layer back onto the weight-shared, local subspace.

    Each filter entry becomes the mean of its copies (its positions in an eLCN, its local entries in an
    eFCN, where copies hidden by padding do not exist); biases are averaged over positions; off-local
    entries are dropped. ``to_cnn(to_efcn(m))`` gives ``m`` back exactly.
    """
    projected = copy.deepcopy(model)
    with torch.no_grad():
        for name, module in list(projected.named_modules()):
            if not isinstance(module, (EmbeddedDense, _LocallyConnectedNd)):
                continue
            g = module.geometry
            conv_cls = nn.Conv1d if g.dims == 1 else nn.Conv2d
            conv = conv_cls(
                g.in_channels, g.out_channels, g.kernel_size, stride=g.stride, padding=g.padding,
                dilation=g.dilation, groups=g.groups, bias=module.bias is not None,
                device=module.weight.device, dtype=module.weight.dtype,
            )
            if isinstance(module, EmbeddedDense):
                conv.weight.copy_(dense_to_conv(module.weight, g))
            else:
                conv.weight.copy_(local_to_conv(module.weight, g))
            if module.bias is not None:
                conv.bias.copy_(module.bias.reshape(g.out_channels, -1).mean(1))
            conv.weight.requires_grad_(module.weight.requires_grad)
            projected = _replace(projected, name, conv)
    projected.space = "cnn"
    return projected


def fcn_of_same_size(model: nn.Module, input_shape: Sequence[int] | None = None, *, generator: torch.Generator | None = None,
                     max_bytes: int | None = None, device=None) -> nn.Module:
    """The paper's baseline: a vanilla FCN with the eFCN's architecture and a standard random init.

    Every dense, linear, locally-connected and conv layer is re-drawn from PyTorch's default
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with ``generator``; normalisation layers are reset.
    """
    fcn = to_efcn(model, input_shape, max_bytes=max_bytes, device=device)
    for module in fcn.modules():
        if isinstance(module, (EmbeddedDense, _LocallyConnectedNd)):
            module.reset_parameters(generator)
        elif isinstance(module, nn.Linear):
            _uniform_init(module.weight, module.bias, module.in_features, generator)
        elif isinstance(module, nn.modules.batchnorm._NormBase):
            module.reset_parameters()
        elif any(True for _ in module.parameters(recurse=False)):
            raise TypeError(f"fcn_of_same_size does not know how to re-initialise {type(module).__name__}")
    fcn.space = "fcn"
    return fcn


def embed_parameters(target: nn.Module, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map parameters of a smaller space (CNN or eLCN) into ``target``'s space (eLCN or eFCN).

    The map is linear and differentiable (it is :math:`\\Phi`), so it can sit inside
    ``torch.func`` transforms: e.g. the Hessian of a CNN is ``J^T H_eFCN J`` with ``J`` its Jacobian.
    Names not belonging to relaxed layers pass through unchanged.
    """
    embedded = dict(params)
    for name, module in target.named_modules():
        if not isinstance(module, (EmbeddedDense, _LocallyConnectedNd)):
            continue
        g = module.geometry
        prefix = f"{name}." if name else ""
        weight = params[prefix + "weight"]
        if isinstance(module, EmbeddedDense):
            embedded[prefix + "weight"] = weight if weight.dim() == 2 else to_dense(weight, g)
        else:
            embedded[prefix + "weight"] = conv_as_local(weight, g) if weight.dim() == 2 + g.dims else weight
        if module.bias is not None:
            bias = params[prefix + "bias"]
            if bias.dim() == 1 and bias.numel() == g.out_channels:
                bias = bias.view(-1, *(1,) * g.dims).expand(g.out_shape)
            embedded[prefix + "bias"] = bias.reshape(module.bias.shape)
    return embedded


def model_space(model: nn.Module) -> str:
    """The space a model lives in: ``"cnn"``, ``"elcn"``, ``"efcn"`` or ``"fcn"`` (a randomly initialised eFCN)."""
    space = getattr(model, "space", None)
    if space in ("cnn", "elcn", "efcn", "fcn"):
        return space
    modules = list(model.modules())
    if any(isinstance(m, EmbeddedDense) for m in modules):
        return "efcn"
    if any(isinstance(m, _LocallyConnectedNd) for m in modules):
        return "elcn"
    return "cnn"
