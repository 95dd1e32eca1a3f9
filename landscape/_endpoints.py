"""Two endpoint models brought into one parameter space, so that a path between them is defined.

A CNN, its eLCN and its eFCN are points of nested spaces (CNN ⊂ eLCN ⊂ eFCN, d'Ascoli et al. 2019,
Sec. 2): the embedding is exact, so a CNN endpoint is moved into the larger space of the other
endpoint before interpolating. The embeddings keep parameter names, so afterwards the two state
dicts must agree key by key and shape by shape; anything else means the architectures differ.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import torch
from torch import nn

import embeddings

# An FCN "of the same size" has the eFCN's layout (only its initialisation differs).
_RANK = {"cnn": 0, "elcn": 1, "efcn": 2, "fcn": 2}


def _describe(model: nn.Module) -> str:
    arch = getattr(model, "arch", type(model).__name__)
    kwargs = getattr(model, "arch_kwargs", None)
    return f"{arch}({json.dumps(kwargs, sort_keys=True)})" if kwargs is not None else str(arch)


def _embed(model: nn.Module, target: str, input_shape: Sequence[int] | None, side: str) -> nn.Module:
    # The shape given wins; the one build_model recorded (``model.input_shape``) is the fallback.
    shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError(f"embedding model {side} ({_space_name(model)}) into the {target} space needs its input shape; "
                         "pass input_shape=(C, L) or (C, H, W) without the batch dimension (CLI: --input-shape 3,32,32)")
    device = next(model.parameters()).device
    embed = embeddings.to_efcn if _RANK[target] == 2 else embeddings.to_elcn
    return embed(model, tuple(shape), device=device)


def _space_name(model: nn.Module) -> str:
    """``<arch> <space>`` of a model, for messages."""
    return f"{getattr(model, 'arch', type(model).__name__)} {embeddings.model_space(model)}"


def align_endpoints(
    model_a: nn.Module, model_b: nn.Module, *, input_shape: Sequence[int] | None = None,
) -> tuple[nn.Module, nn.Module, dict[str, str]]:
    """Bring the endpoint in the smaller space (CNN < eLCN < eFCN) into the larger one.

    Args:
        model_a, model_b: the endpoints.
        input_shape: one input without the batch dimension, needed to embed a CNN endpoint; default:
            the ``input_shape`` that ``embeddings.build_model`` recorded on the model.

    Returns:
        ``(a, b, spaces)``: the two models in one space (an endpoint already there is returned as
        is, never copied) and ``{"a": ..., "b": ..., "common": ...}``, the spaces before and after.

    Raises:
        ValueError: one line saying why the two models cannot share a path (different registered
            architectures, parameters whose names or shapes disagree after embedding, or a CNN to
            embed whose input shape is neither given nor recorded).
    """
    arch_a, arch_b = getattr(model_a, "arch", None), getattr(model_b, "arch", None)
    if arch_a is not None and arch_b is not None and (arch_a, model_a.arch_kwargs) != (arch_b, model_b.arch_kwargs):
        raise ValueError(
            f"cannot interpolate between unrelated architectures: model A is {_describe(model_a)}, model B is "
            f"{_describe(model_b)}; both endpoints must come from the same architecture (one may be its eLCN/eFCN)"
        )
    space_a, space_b = embeddings.model_space(model_a), embeddings.model_space(model_b)
    common = space_a if _RANK[space_a] >= _RANK[space_b] else space_b
    if _RANK[space_a] < _RANK[common]:
        model_a = _embed(model_a, common, input_shape, "A")
    if _RANK[space_b] < _RANK[common]:
        model_b = _embed(model_b, common, input_shape, "B")
    shapes_a = {name: tuple(p.shape) for name, p in model_a.named_parameters()}
    shapes_b = {name: tuple(p.shape) for name, p in model_b.named_parameters()}
    if shapes_a != shapes_b:
        only_a, only_b = sorted(set(shapes_a) - set(shapes_b)), sorted(set(shapes_b) - set(shapes_a))
        if only_a or only_b:
            why = f"parameters only in A: {only_a[:3]}, only in B: {only_b[:3]}"
        else:
            name = next(n for n in shapes_a if shapes_a[n] != shapes_b[n])
            why = f"parameter {name!r} has shape {shapes_a[name]} in A but {shapes_b[name]} in B"
        raise ValueError(
            f"cannot interpolate between {_describe(model_a)} ({space_a}) and {_describe(model_b)} ({space_b}): "
            f"in the common {common} space {why}; the endpoints must be one architecture (or its embeddings)"
        )
    return model_a, model_b, {"a": space_a, "b": space_b, "common": common}


def common_device(model_a: nn.Module, device: torch.device | str | None) -> torch.device:
    """``device`` if given, else where model A's parameters live."""
    return torch.device(device) if device is not None else next(model_a.parameters()).device
