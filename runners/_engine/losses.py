"""The objective of training and of the probes, by name (``--loss``): ``ce``, ``mse`` or an import path.

:func:`resolve_loss` turns the name into a batch-mean loss ``loss_fn(outputs, targets)``, the form
every ``landscape`` function takes (``reduction="mean"``, so batch means weighted by batch sizes give
the exact full-data mean):

* ``ce`` (default): cross entropy on class indices, :func:`torch.nn.functional.cross_entropy`.
* ``mse``: the mean squared error between the outputs and one-hot targets, averaged over the batch
  and the classes like ``nn.MSELoss`` (:func:`mse_one_hot`; classifiers trained on the square loss,
  Hui & Belkin, ICLR 2021).
* ``package.module:function``: any function ``(outputs, targets) -> scalar tensor`` that averages
  over the batch; ``targets`` are the int64 class indices.

Accuracy stays the fraction of argmax predictions equal to the label, whatever the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from landscape import LossFn
from runners._engine.imports import import_function, is_import_path

__all__ = ["LOSSES", "check_loss_name", "resolve_loss", "mse_one_hot"]

LOSSES = ("ce", "mse")


def mse_one_hot(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch and the classes of ``(outputs - one_hot(targets))**2``.

    The one-hot matrix is built by comparison, not ``F.one_hot``, so that the loss also runs under
    ``torch.func.vmap`` (the string method's points, the Hessian products).

    Example:
        >>> float(mse_one_hot(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([0, 1])))
        0.25
    """
    one_hot = targets.unsqueeze(-1) == torch.arange(outputs.shape[-1], device=outputs.device)
    return F.mse_loss(outputs, one_hot.to(outputs.dtype))


def check_loss_name(name: str) -> str:
    """``name`` when it is ``ce``, ``mse`` or has the form of an import path; one-line ``ValueError`` otherwise.

    Example:
        >>> check_loss_name("mse"), check_loss_name("mylosses:focal")
        ('mse', 'mylosses:focal')
    """
    if not isinstance(name, str) or not (name in LOSSES or is_import_path(name)):
        raise ValueError(f"loss must be ce, mse or an import path 'package.module:function', got {name!r}")
    return name


def resolve_loss(name: str) -> LossFn:
    """The batch-mean loss function that ``name`` names (module docstring).

    Raises:
        ValueError: one line: an unknown name, or an import path that does not lead to a function.

    Example:
        >>> resolve_loss("ce") is F.cross_entropy
        True
    """
    check_loss_name(name)
    if name == "ce":
        return F.cross_entropy
    if name == "mse":
        return mse_one_hot
    return import_function(name, what=f"--loss {name}")
