"""Whether a model fits a data set: one line before anything runs, instead of a traceback mid-run.

Every CLI that meets a model and a data set (``runners.train`` and ``runners.relax`` for a fresh or
``--init`` model, ``runners.interpolate`` and ``runners.sharpness`` for checkpoints) calls
:func:`check_model` first: a 4-class checkpoint given 10-class data would otherwise fail in the
middle of a probe with ``IndexError: Target 6 is out of bounds``.
"""

from __future__ import annotations

import torch
from torch import nn

from landscape import LossFn
from runners._engine.data import Dataset

__all__ = ["check_model"]


def check_model(data: Dataset, model: nn.Module, *, what: str, loss_fn: LossFn | None = None) -> None:
    """Raise one line when ``model`` cannot classify this data set; nothing is trained or written.

    One training example goes through the model (eval mode, no gradients, on the model's
    device): its inputs must fit, and it must give at least ``data.num_classes`` scores (more is
    fine: a data set may use a subset of a model's classes). With ``loss_fn``, the loss of that
    example must be a scalar tensor.

    Args:
        data: the data set.
        model: the model (a fresh one, or loaded from a checkpoint).
        what: how the message names the model, e.g. ``"checkpoint a.pt"``.
        loss_fn: the loss to check, ``(outputs, targets) -> scalar``.

    Raises:
        ValueError: one line saying what does not fit and what to do.

    Example:
        >>> from runners._engine.data import load_data
        >>> data = load_data("fake", n_train=4, n_test=2, input_shape=(5,), num_classes=3)
        >>> check_model(data, nn.Linear(5, 2), what="the model")
        Traceback (most recent call last):
        ...
        ValueError: the model outputs 2 class scores but fake has 3 classes (labels 0..2); pass the data set it was trained on, or a model with 3 outputs
    """
    param = next(model.parameters(), None)
    x, y = data.x_train[:1], data.y_train[:1]
    if param is not None:
        x, y = x.to(param.device), y.to(param.device)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as err:  # torch's shape errors come in all of these
        raise ValueError(f"{what} cannot take {data.name} inputs of shape {data.input_shape} "
                         f"({str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}); "
                         "pass the data set it was trained on, or a model for these inputs") from None
    finally:
        model.train(training)
    if not isinstance(outputs, torch.Tensor) or outputs.dim() != 2:
        shape = tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else type(outputs).__name__
        raise ValueError(f"{what} gives {shape} for a batch of one input; a classifier returns scores of shape (batch, classes)")
    if outputs.shape[1] < data.num_classes:
        raise ValueError(f"{what} outputs {outputs.shape[1]} class scores but {data.name} has {data.num_classes} classes "
                         f"(labels 0..{data.num_classes - 1}); pass the data set it was trained on, or a model with "
                         f"{data.num_classes} outputs")
    if loss_fn is not None:
        try:
            with torch.no_grad():
                loss = loss_fn(outputs, y)
        except Exception as err:  # the user's loss failing on real shapes: one line
            raise ValueError(f"the loss fails on {what}'s outputs {tuple(outputs.shape)} and int64 targets {tuple(y.shape)} "
                             f"({type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}); "
                             "a loss takes (outputs, targets) and returns their batch mean") from None
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:  # (1,) from a batch of one hides a per-example loss
            got = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(f"the loss returns {got}, not a scalar tensor; average it over the batch (reduction='mean')")
