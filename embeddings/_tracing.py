"""Find the layers to relax, the input shape each one sees and its conv geometry, without running real data.

A forward pass on meta tensors (no memory, no compute) with hooks on every relaxable layer records
its input shape; models whose ops lack meta kernels fall back to a zero input of batch 2 on the CPU.
Both :mod:`~embeddings.embed` (which builds relaxed layers) and :mod:`~embeddings.memory` (which
counts their parameters first) read layers and geometries from here, so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from .geometry import ConvGeometry
from .layers import EmbeddedDense, _LocallyConnectedNd

SUPPORTED_CONVS = (nn.Conv1d, nn.Conv2d)
RELAXABLE = (nn.Conv1d, nn.Conv2d, _LocallyConnectedNd, EmbeddedDense)


@dataclass(frozen=True)
class RelaxableLayer:
    """A relaxable layer found in a model: its dotted name, the module, and its input shape (no batch)."""

    name: str
    module: nn.Module
    in_shape: tuple[int, ...]


def layer_geometry(layer: RelaxableLayer) -> ConvGeometry:
    """The receptive-field geometry of a relaxable layer on the input shape it receives."""
    module = layer.module
    if isinstance(module, SUPPORTED_CONVS):
        return ConvGeometry.create(
            in_channels=module.in_channels, out_channels=module.out_channels, kernel_size=module.kernel_size,
            in_size=layer.in_shape[1:], stride=module.stride, padding=module.padding, dilation=module.dilation,
            groups=module.groups,
        )
    return module.geometry


def _check_supported(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd) and not isinstance(module, SUPPORTED_CONVS):
            raise TypeError(
                f"cannot embed {type(module).__name__} at {name or '<model>'!r}: only Conv1d and Conv2d (and the "
                "LocallyConnected layers) have eLCN/eFCN embeddings; replace or remove that layer first"
            )
        if isinstance(module, nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params():
            raise TypeError(f"{type(module).__name__} at {name!r} is uninitialised: run one forward pass before embedding")
        if isinstance(module, SUPPORTED_CONVS) and module.padding_mode != "zeros":
            raise TypeError(
                f"{type(module).__name__} at {name!r} uses padding_mode={module.padding_mode!r}; the embeddings "
                "fold only zero padding into the relaxed layer, so rebuild it with padding_mode='zeros'"
            )


def _run_with_hooks(model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> dict[str, tuple[int, ...]]:
    seen: dict[str, tuple[int, ...]] = {}
    names = {module: name for name, module in model.named_modules() if isinstance(module, RELAXABLE)}

    def record(module: nn.Module, args: tuple) -> None:
        shape = tuple(args[0].shape[1:])
        name = names[module]
        if name in seen and seen[name] != shape:
            raise ValueError(
                f"layer {name!r} is applied to inputs of different shapes ({seen[name]} and {shape}); an embedding "
                "gives one dense matrix per layer, so each conv must see a single input size"
            )
        seen[name] = shape

    state = {k: v.detach().to(device) if device.type != "meta" else torch.empty_like(v, device="meta")
             for k, v in [*model.named_parameters(), *model.named_buffers()]}
    floating = [v for v in state.values() if v.is_floating_point()]
    dtype = floating[0].dtype if floating else torch.get_default_dtype()
    # Batch of 2: BatchNorm in training mode refuses a single value per channel.
    x = torch.zeros((2, *input_shape), dtype=dtype, device=device)
    if device.type != "meta":
        state = {k: v.clone() for k, v in state.items()}  # BatchNorm updates running stats in place
    handles = [module.register_forward_pre_hook(record) for module in names]
    try:
        with torch.no_grad():
            functional_call(model, state, (x,))
    finally:
        for handle in handles:
            handle.remove()
    return seen


def find_relaxable_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[RelaxableLayer]:
    """Relaxable layers of ``model`` with the input shape each receives for inputs of ``input_shape``."""
    _check_supported(model)
    try:
        try:
            seen = _run_with_hooks(model, input_shape, torch.device("meta"))
        except (NotImplementedError, RuntimeError) as err:
            if "meta" not in str(err).lower():
                raise
            seen = _run_with_hooks(model, input_shape, torch.device("cpu"))
    except (RuntimeError, IndexError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"the model cannot run on inputs of shape {input_shape} (batch dimension excluded): {first_line}. "
            "Pass the shape of one input, e.g. (1, 40) for MNIST-1D or (3, 32, 32) for CIFAR"
        ) from None
    layers = []
    for name, module in model.named_modules():
        if isinstance(module, RELAXABLE):
            if name not in seen:
                raise ValueError(f"layer {name!r} is never called in the forward pass, so its input size is unknown")
            layers.append(RelaxableLayer(name, module, seen[name]))
    return layers
