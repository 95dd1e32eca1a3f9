"""Self-describing checkpoints: a file that rebuilds its model with no other input.

A checkpoint is a plain dict saved with ``torch.save``::

    {"format": "needle-checkpoint/1", "arch": "vanilla1d", "arch_kwargs": {...},
     "space": "cnn" | "elcn" | "efcn" | "fcn", "input_shape": (1, 40),
     "state_dict": {...}, "meta": {...}}

Only tensors and plain values are stored, so :func:`load_checkpoint` reads it with
``torch.load(..., weights_only=True)`` (no code runs while loading) and rebuilds the model from the
architecture registry: ``embeddings.build_model(arch, **arch_kwargs)``, then ``to_elcn`` /
``to_efcn`` / ``fcn_of_same_size`` according to ``space``, then ``load_state_dict``. Parameter names
are kept by the embeddings, so the state dict of a trained eFCN fits the eFCN rebuilt from the CNN.

Example:
    >>> import tempfile, os
    >>> from embeddings import build_model
    >>> model = build_model("vanilla1d", channels=4)
    >>> path = save_checkpoint(os.path.join(tempfile.mkdtemp(), "cnn.pt"), model, epoch=3)
    >>> again, meta = load_checkpoint(path)
    >>> meta, again.space, bool((again(torch.ones(1, 1, 40)) == model(torch.ones(1, 1, 40))).all())
    ({'epoch': 3}, 'cnn', True)
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from results._checks import SPACES, check_model_attributes, check_plain

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint", "CheckpointError"]

CHECKPOINT_FORMAT = "needle-checkpoint/1"
_KEYS = ("format", "arch", "arch_kwargs", "space", "input_shape", "state_dict", "meta")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not fit its architecture (one-line message)."""


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **meta: Any) -> Path:
    """Save ``model`` with everything needed to rebuild it, atomically.

    Args:
        path: destination file (its folder is created). The file is written next to it first and
            renamed, so a killed process never leaves a half-written checkpoint.
        model: a model from ``embeddings.build_model`` or an embedding of one (it carries ``.arch``,
            ``.arch_kwargs``, ``.input_shape`` and ``.space``).
        **meta: plain values (numbers, strings, lists, dicts, tensors) stored under ``"meta"``,
            e.g. ``epoch=10, t_w=5, test_acc=0.91``.

    Returns:
        The path written.
    """
    arch, arch_kwargs, input_shape, space = check_model_attributes(model)
    check_plain(meta, "meta")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "arch_kwargs": arch_kwargs,
        "space": space,
        "input_shape": input_shape,
        "state_dict": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()},
        "meta": dict(meta),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    os.replace(partial, path)
    return path


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path (checkpoints are written by runners.train / runners.relax)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError) as err:
        # torch's own messages run to paragraphs; the type is enough to tell truncation from a foreign file.
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file ({type(err).__name__}); re-create it") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"checkpoint {path} has format {found!r}, expected {CHECKPOINT_FORMAT!r}; "
            f"save it with results.save_checkpoint"
        )
    missing = [key for key in _KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the keys {missing}; re-create it with results.save_checkpoint")
    if payload["space"] not in SPACES:
        raise CheckpointError(f"checkpoint {path} has space {payload['space']!r}, expected one of {', '.join(SPACES)}")
    return payload


def _rebuild(arch: str, arch_kwargs: dict[str, Any], space: str, input_shape: tuple[int, ...]) -> nn.Module:
    """An untrained model of the given architecture in the given space (weights to be loaded)."""
    import embeddings  # deferred: only loading needs the registry and the embeddings

    model = embeddings.build_model(arch, **arch_kwargs)
    if space == "elcn":
        model = embeddings.to_elcn(model, input_shape)
    elif space == "efcn":
        model = embeddings.to_efcn(model, input_shape)
    elif space == "fcn":
        # The random init is thrown away by load_state_dict; a fixed generator keeps this pure.
        model = embeddings.fcn_of_same_size(model, input_shape, generator=torch.Generator().manual_seed(0))
    return model


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved by :func:`save_checkpoint`.

    Args:
        path: the checkpoint file.
        map_location: device of the returned model.

    Returns:
        ``(model, meta)``: the model in eval mode with its ``.arch``, ``.arch_kwargs``,
        ``.input_shape`` and ``.space`` set, and the ``meta`` dict given when saving.

    Raises:
        CheckpointError: the file is missing, corrupt, of another format, or its weights do not fit
            the architecture it names.
    """
    path = Path(path)
    payload = _read(path)
    input_shape = tuple(int(s) for s in payload["input_shape"])
    try:
        model = _rebuild(payload["arch"], dict(payload["arch_kwargs"]), payload["space"], input_shape)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path} names an architecture that cannot be built: {err}") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        details = " ".join(str(err).split())
        raise CheckpointError(
            f"checkpoint {path}: weights do not fit {payload['arch']} ({payload['space']}): {details[:300]}"
        ) from None
    return model.to(map_location).eval(), dict(payload["meta"])
