"""ExpandNets: linear expansion of a compact net, and its exact algebraic compression.

Guo, Alvarez & Salzmann, "ExpandNets: Linear Over-parameterization to Train Compact Convolutional
Networks" (NeurIPS 2020). With expansion rate ``r``, a layer with ``m`` inputs and ``n`` outputs
becomes a chain without nonlinearity:

* **FC** -- ``Linear(m, n)`` -> ``Linear(m, rm)``, ``Linear(rm, rn)``, ``Linear(rn, n)``;
* **CL** -- a ``k x k`` conv -> ``1 x 1`` (m -> rm), ``k x k`` (rm -> rn), ``1 x 1`` (rn -> n);
* **CK** -- a ``k x k`` conv, ``k`` odd and > 3 -> ``l = (k - 1) / 2`` stacked ``3 x 3`` convs
  ``m -> rm -> rn -> ... -> rn -> n``, which see the same ``k x k`` receptive field. A conv whose
  kernel cannot be split so (a ``3 x 3``, an even or non-square kernel) stays compact, as the paper
  keeps the 3x3 layers of its nets; the expansion record lists those layers (``left_compact``) and a
  warning names them. Only a net with no eligible conv at all is refused.

The expanded net is trained as is (from its own random initialisation); :func:`compress` multiplies
every chain out (see :mod:`embeddings._expand_layers` for the algebra) and returns a net with the
compact architecture that computes the same function, at any point of training. Normalisation,
activations and pooling are never part of a chain, so BatchNorm stays where it was.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from typing import Literal

import torch
from torch import nn

from embeddings._expand_checks import check_ck_kernel, check_mode, check_rate, conv_padding
from embeddings._expand_layers import ExpandedConv, ExpandedLinear

__all__ = ["ExpandMode", "compress", "compressed_parameters", "expand", "expanded_layers", "product_l2"]

ExpandMode = Literal["fc", "cl", "ck", "cl+fc", "ck+fc"]

_Chain = (ExpandedLinear, ExpandedConv)


def _expand_linear(layer: nn.Linear, rate: int, generator: torch.Generator) -> ExpandedLinear:
    weight = layer.weight
    return ExpandedLinear(
        layer.in_features, layer.out_features, widths=(rate * layer.in_features, rate * layer.out_features),
        bias=layer.bias is not None, generator=generator, device=weight.device, dtype=weight.dtype,
    )


def _expand_conv(name: str, layer: nn.Conv1d | nn.Conv2d, part: str, rate: int, generator: torch.Generator) -> ExpandedConv:
    padding = conv_padding(name, layer)
    dim = len(layer.kernel_size)
    m, n = layer.in_channels, layer.out_channels
    if part == "cl":
        widths, kernels = [rate * m, rate * n], [(1,) * dim, tuple(layer.kernel_size), (1,) * dim]
    else:
        depth = (check_ck_kernel(name, layer) - 1) // 2
        widths, kernels = [rate * m] + [rate * n] * (depth - 2), [(3,) * dim] * depth
    weight = layer.weight
    return ExpandedConv(
        dim, m, n, kernel_size=tuple(layer.kernel_size), stride=tuple(layer.stride), padding=padding,
        padding_mode=layer.padding_mode, bias=layer.bias is not None, widths=widths, kernel_sizes=kernels,
        generator=generator, device=weight.device, dtype=weight.dtype,
    )


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def expand(
    model: nn.Module, mode: ExpandMode, *, rate: int = 4, expand_classifier: bool = False,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """A linearly expanded copy of ``model`` (the original is left untouched).

    Every ``nn.Conv1d`` / ``nn.Conv2d`` becomes an :class:`ExpandedConv` in modes ``"cl"``, ``"ck"``
    (and their ``"+fc"`` variants); every ``nn.Linear`` except the last one (the classifier, unless
    ``expand_classifier``) becomes an :class:`ExpandedLinear` in modes with ``"fc"``. The chains are
    freshly initialised with PyTorch's default rule, as the paper trains the expanded net from
    scratch. The copy records ``expansion = {"mode", "rate", "expand_classifier", "left_compact"}``
    (``left_compact``: the convs mode ``"ck"`` could not expand, by name); each chain records its
    compact layer's configuration so that :func:`compress` can rebuild it.

    Args:
        model: the compact net (any module; convs must have groups 1 and dilation 1).
        mode: ``"fc"``, ``"cl"``, ``"ck"``, ``"cl+fc"`` or ``"ck+fc"``.
        rate: expansion rate ``r`` (the paper's default is 4).
        expand_classifier: also expand the last Linear layer in ``"fc"`` modes.
        generator: source of the chains' initialisation; default ``torch.Generator().manual_seed(0)``
            so that the result never depends on the global RNG.

    Raises:
        ValueError: unknown mode, bad rate, a net without layers to expand, or (mode ``"ck"``) a net
            none of whose convs has a square odd kernel larger than 3.

    Warns:
        UserWarning: (mode ``"ck"``) the convs left compact, when some but not all can be expanded.

    Example (MNIST-1D SmallNet, 7-tap kernels -> 3 stacked 3-tap convs):
        >>> from embeddings.smallnets import smallnet1d
        >>> big = expand(smallnet1d(kernel_size=7), "ck")
        >>> [tuple(c.kernel_size) for c in big.features[0].layers]
        [(3,), (3,), (3,)]
    """
    parts = check_mode(mode)
    rate = check_rate(rate)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    linears = [name for name, m in model.named_modules() if type(m) is nn.Linear]
    if linears and not expand_classifier:
        linears = linears[:-1]
    convs = {name: m for name, m in model.named_modules() if type(m) in (nn.Conv1d, nn.Conv2d)} if parts[0] in ("cl", "ck") else {}
    left_compact = [name for name, conv in convs.items() if parts[0] == "ck" and not _splits_into_3x3(conv)]
    if convs and len(left_compact) == len(convs):
        check_ck_kernel(*next(iter(convs.items())))  # no conv to expand: the kernel rule, in one line
    if left_compact:
        warnings.warn(f"expand: mode {mode!r} leaves {', '.join(left_compact)} compact (kernels that are not square, odd and "
                      "larger than 3 cannot be split into 3 x 3 convs); the other convs are expanded", stacklevel=2)
    targets: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if name in convs and name not in left_compact:
            targets[name] = module
        elif name in linears and "fc" in parts:
            targets[name] = module
    if not targets:
        raise ValueError(
            f"expand: mode {mode!r} found nothing to expand in {type(model).__name__} (convs for 'cl'/'ck', "
            f"Linear layers other than the classifier for 'fc'); pass expand_classifier=True or another mode"
        )
    expanded = copy.deepcopy(model)
    for name, module in targets.items():
        if isinstance(module, nn.Linear):
            chain = _expand_linear(module, rate, generator)
        else:
            chain = _expand_conv(name, module, parts[0], rate, generator)
        _set_submodule(expanded, name, chain)
    expanded.expansion = {"mode": mode, "rate": rate, "expand_classifier": expand_classifier, "left_compact": left_compact}
    return expanded


def _splits_into_3x3(conv: nn.Conv1d | nn.Conv2d) -> bool:
    """Whether mode ``"ck"`` can expand ``conv``: a square, odd kernel larger than 3 (:func:`check_ck_kernel`'s rule)."""
    try:
        check_ck_kernel("", conv)
    except ValueError:
        return False
    return True


def expanded_layers(model: nn.Module) -> dict[str, ExpandedLinear | ExpandedConv]:
    """The expanded chains of ``model`` by module name (empty for a compact net)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, _Chain)}


def _check_expanded(model: nn.Module, caller: str) -> dict[str, ExpandedLinear | ExpandedConv]:
    chains = expanded_layers(model)
    if not chains:
        raise ValueError(f"{caller}: {type(model).__name__} holds no expanded layers; expected the output of expand(...)")
    return chains


def compress(expanded: nn.Module) -> nn.Module:
    """The compact net computing the same function as ``expanded`` (a new module).

    Each chain is multiplied out into the layer it replaced (same class, configuration and
    parameter names), other modules and buffers (e.g. BatchNorm statistics) are copied, and the
    ``expansion`` record is dropped, so ``compact.load_state_dict(compress(expand(compact)).state_dict())``
    works. ``f`` is preserved up to floating-point rounding (float64 gives ~1e-12).

    Raises:
        ValueError: ``expanded`` holds no expanded layers.
    """
    chains = _check_expanded(expanded, "compress")
    compact = copy.deepcopy(expanded)
    for name, chain in chains.items():
        _set_submodule(compact, name, chain.compact())
    if hasattr(compact, "expansion"):
        del compact.expansion
    return compact


def compressed_parameters(expanded: nn.Module, params: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The compact net's parameters as a differentiable function of the expanded net's parameters.

    Args:
        expanded: an expanded net (its structure only, when ``params`` is given).
        params: expanded parameters by name, as for ``torch.func.functional_call``; default: its own.

    Returns:
        Parameters named as in the compact net (``features.0.weight`` ...), in module order.
    """
    chains = _check_expanded(expanded, "compressed_parameters")
    if params is None:
        params = dict(expanded.named_parameters())
    out: dict[str, torch.Tensor] = {}
    done: set[str] = set()
    for name, _ in expanded.named_parameters():
        owner = next((c for c in chains if name.startswith(c + ".")), None)
        if owner is None:
            out[name] = params[name]
        elif owner not in done:
            local = {key[len(owner) + 1:]: value for key, value in params.items() if key.startswith(owner + ".")}
            out.update({f"{owner}.{key}": value for key, value in chains[owner].composed(local).items()})
            done.add(owner)
    return out


def product_l2(expanded: nn.Module, params: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """``sum ||theta_c||^2`` over the compressed parameters: the paper's "product L2" penalty (Fig. 7).

    Weight decay on the expanded parameters ("normal L2") penalises the factors of each chain; this
    penalises the product, i.e. the compact net that is actually deployed. Multiply by ``lambda / 2``.
    """
    return sum(value.pow(2).sum() for value in compressed_parameters(expanded, params).values())
