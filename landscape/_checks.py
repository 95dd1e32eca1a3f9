"""Input validation at the boundary of ``landscape``: every message says what was expected, what was
received and what to do about it. Shared by the modules of the package; add functions, do not edit others'.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

_STOCHASTIC_LAYERS = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)


def check_positive_int(name: str, value: Any) -> int:
    """``value`` as an int >= 1, or a ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}; pass an int >= 1")
    return value


def check_positive_float(name: str, value: Any) -> float:
    """``value`` as a float > 0, or a ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_num_eigenvalues(k: Any, size: int) -> int:
    """``k`` eigenvalues can be asked of an operator of dimension ``size`` when 1 <= k <= size."""
    check_positive_int("k", k)
    if k > size:
        raise ValueError(f"k={k} eigenvalues were asked of an operator of dimension {size}; pass k <= {size}")
    return k


def check_hessian_batches(batches: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The ``(x, y)`` batches of a full-data average, as a list, after checking they are non-empty pairs.

    A list is returned because curvature probes iterate over the data hundreds of times; a one-shot
    iterator (a generator) would silently run dry after the first pass.
    """
    if isinstance(batches, Iterator):
        raise ValueError(
            "batches must be re-iterable (a list of (x, y) pairs or a DataLoader), got a one-shot iterator "
            f"{type(batches).__name__}; pass list(batches)"
        )
    if not isinstance(batches, Iterable):
        raise ValueError(f"batches must be an iterable of (x, y) tensor pairs, got {type(batches).__name__}")
    pairs = []
    for index, batch in enumerate(batches):
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and all(torch.is_tensor(t) for t in batch)):
            raise ValueError(f"batch {index} must be an (x, y) pair of tensors, got {type(batch).__name__}")
        if len(batch[0]) == 0 or len(batch[0]) != len(batch[1]):
            raise ValueError(f"batch {index} has {len(batch[0])} inputs and {len(batch[1])} targets; expected equal, non-zero counts")
        pairs.append((batch[0], batch[1]))
    if not pairs:
        raise ValueError("batches is empty: curvature probes need at least one (x, y) batch of data")
    return pairs


def check_deterministic_mode(model: nn.Module) -> None:
    """A Hessian is of a deterministic function: dropout and batch-norm layers must be in eval mode."""
    for name, module in model.named_modules():
        if module.training and isinstance(module, _STOCHASTIC_LAYERS):
            raise ValueError(
                f"layer {name!r} ({type(module).__name__}) is in training mode, so the loss is not a fixed function "
                "of the parameters; call model.eval() before probing curvature"
            )


def check_parameter_names(names: Iterable[str], available: Iterable[str]) -> tuple[str, ...]:
    """Names of parameters to restrict to: non-empty, each one a trainable parameter of the model."""
    names = tuple(names)
    available = tuple(available)
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ValueError(f"unknown parameter names {unknown}; the model's trainable parameters are {list(available)}")
    if not names:
        raise ValueError("params is empty; pass at least one parameter name (or None for all parameters)")
    return names


def check_masks(masks: Any, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Masks ``{name: bool tensor}`` of the parameters' shapes, selecting at least one entry in all."""
    if not isinstance(masks, dict) or not masks:
        raise ValueError(f"masks must be a non-empty dict {{param_name: bool tensor}}, got {type(masks).__name__}")
    checked = {}
    for name, mask in masks.items():
        if name not in params:
            raise ValueError(f"mask for unknown parameter {name!r}; the model's trainable parameters are {list(params)}")
        if not torch.is_tensor(mask) or mask.dtype != torch.bool or mask.shape != params[name].shape:
            got = f"{mask.dtype} {tuple(mask.shape)}" if torch.is_tensor(mask) else type(mask).__name__
            raise ValueError(f"mask for {name!r} must be a bool tensor of shape {tuple(params[name].shape)}, got {got}")
        checked[name] = mask.to(params[name].device)
    if not any(bool(mask.any()) for mask in checked.values()):
        raise ValueError("masks select no entry at all; a subspace needs at least one True entry")
    return checked


def check_mean_loss(loss_fn: Any) -> nn.Module:
    """A loss module averaging over its batch (default ``nn.CrossEntropyLoss()``), so that batch means
    weighted by batch sizes give the exact full-data mean."""
    if loss_fn is None:
        return nn.CrossEntropyLoss()
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be a callable loss such as nn.CrossEntropyLoss(), got {type(loss_fn).__name__}")
    reduction = getattr(loss_fn, "reduction", "mean")
    if reduction != "mean":
        raise ValueError(
            f"loss_fn must average over the batch (reduction='mean'), got reduction={reduction!r}; "
            "pass e.g. nn.CrossEntropyLoss() so batch losses can be weighted into the full-data mean"
        )
    return loss_fn


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def check_stiffness(value: Any) -> float:
    """The string's stiffness k: a finite number >= 0 (0 lets the points fall independently)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ValueError(
            f"stiffness k must be a finite number >= 0 (k=0: points fall independently, large k: the linear path), got {value!r}"
        )
    return float(value)


def check_string_config(config: Any) -> None:
    """Every field of a ``StringConfig``, checked when it is built."""
    if isinstance(config.num_points, bool) or not isinstance(config.num_points, int) or config.num_points < 3:
        raise ValueError(f"num_points must be an int >= 3 (two fixed endpoints and at least one moving point), got {config.num_points!r}")
    check_stiffness(config.stiffness)
    check_positive_int("epochs", config.epochs)
    if config.steps is not None:
        check_positive_int("steps", config.steps)
    if config.lr != "auto":
        check_positive_float("lr", config.lr)
    check_positive_int("record_every", config.record_every)
    if isinstance(config.momentum, bool) or not isinstance(config.momentum, (int, float)) or not 0 <= config.momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {config.momentum!r}")
    _check_choice("optimizer", config.optimizer, ("sgd", "adam"))
    _check_choice("forces", config.forces, ("elastic", "neb"))
    _check_choice("spring", config.spring, ("implicit", "explicit"))
    _check_choice("batching", config.batching, ("auto", "vmap", "loop"))
    if config.lr == "auto" and config.optimizer != "sgd":
        raise ValueError("lr='auto' sets an SGD step from the endpoints' curvature; with optimizer='adam' give lr a number "
                         "(e.g. 1e-3; CLI: --string-lr)")
    if config.climbing_image and config.forces != "neb":
        raise ValueError("climbing_image=True needs forces='neb' (the climbing image is a nudged-elastic-band force)")


def check_training_batches(batches: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Non-empty ``(x, y)`` batches as a list (mini-batch loops index and shuffle them)."""
    if isinstance(batches, Iterator):
        raise ValueError(f"batches must be re-iterable (a list of (x, y) pairs), got a one-shot {type(batches).__name__}; pass list(batches)")
    pairs = [tuple(batch) for batch in batches]
    if not pairs or any(len(pair) != 2 or len(pair[0]) == 0 for pair in pairs):
        raise ValueError("batches must be a non-empty list of (x, y) pairs of non-empty tensors")
    return pairs


def check_alphas(alphas: Any, method: str) -> torch.Tensor:
    """Interpolation coefficients as a 1-D float64 tensor; within [0, 1] unless the method is linear."""
    _check_choice("method", method, ("linear", "output", "string"))
    values = torch.as_tensor(alphas, dtype=torch.float64).flatten()
    if values.numel() == 0 or not bool(torch.isfinite(values).all()):
        raise ValueError(f"alphas must be a non-empty sequence of finite numbers, got {alphas!r}")
    if method != "linear" and bool(((values < 0) | (values > 1)).any()):
        raise ValueError(
            f"alphas for method {method!r} must lie in [0, 1] (its path only exists between the endpoints), got "
            f"min {float(values.min()):g}, max {float(values.max()):g}; extrapolate with method='linear' only"
        )
    return values


class NonFiniteError(ValueError):
    """A probe met a NaN or an infinity: in the parameters before it started, or in one of its results.

    A ``ValueError`` (a bad input, like every other check here) with a one-line message; the usual cause
    is a diverged training run, whose checkpoints after the divergence hold NaN weights.
    """


def check_finite_tensors(named: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]], what: str = "parameter") -> None:
    """Raise :class:`NonFiniteError` naming the first floating-point tensor holding a NaN or an infinity.

    Example:
        >>> check_finite_tensors({"weight": torch.tensor([1.0, float("nan")])})
        Traceback (most recent call last):
        ...
        landscape._checks.NonFiniteError: parameter 'weight' holds 1 non-finite value (NaN or inf) of 2; the model probably diverged: probe a checkpoint saved before its loss became non-finite
    """
    for name, tensor in named.items() if isinstance(named, Mapping) else named:
        if torch.is_tensor(tensor) and tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor.detach())).sum())
            if bad:
                raise NonFiniteError(
                    f"{what} {name!r} holds {bad} non-finite value{'s' if bad > 1 else ''} (NaN or inf) of {tensor.numel()}; "
                    "the model probably diverged: probe a checkpoint saved before its loss became non-finite"
                )


def check_finite_model(model: nn.Module) -> None:
    """Parameters, then floating-point buffers (BatchNorm statistics), all finite, or :class:`NonFiniteError`.

    Every probe calls this before it starts (through ``Objective``, :func:`~landscape.interpolate`), so a
    diverged model is refused in one line instead of failing deep inside SciPy or returning NaN.
    """
    check_finite_tensors(model.named_parameters(), "parameter")
    check_finite_tensors(model.named_buffers(), "buffer")


def check_finite_result(what: str, value: Any) -> Any:
    """``value`` (a number, array or tensor) if every entry is finite, else :class:`NonFiniteError` naming ``what``."""
    values = value.detach().cpu() if torch.is_tensor(value) else torch.as_tensor(value, dtype=torch.float64)
    if values.is_floating_point() and not bool(torch.isfinite(values).all()):
        shown = f"{float(values):g}" if values.numel() == 1 else f"{int((~torch.isfinite(values)).sum())} non-finite entries"
        raise NonFiniteError(f"{what} is not finite ({shown}); the loss or its derivatives overflow there: "
                             "probe a checkpoint saved before training diverged, or a smaller region")
    return value
