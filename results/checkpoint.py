"""Self-describing checkpoints: a file that rebuilds its model with no other input.

A checkpoint is a plain dict saved with ``torch.save``::

    {"format": "needle-checkpoint/2", "arch": "vanilla1d" | "package.module:factory",
     "arch_kwargs": {...}, "space": "cnn" | "elcn" | "efcn" | "fcn", "input_shape": (1, 40),
     "state_dict": {...}, "meta": {...}, "sha256": "<hex>"}

Only tensors and plain values are stored, so :func:`load_checkpoint` reads it with
``torch.load(..., weights_only=True)`` (no code runs while loading) and rebuilds the model with
``embeddings.build_model(arch, **arch_kwargs)`` (a registry name or an import path), then
``to_elcn`` / ``to_efcn`` / ``fcn_of_same_size`` according to ``space``, then ``load_state_dict``.
Parameter names are kept by the embeddings, so the state dict of a trained eFCN fits the eFCN
rebuilt from the CNN. Files are written with :func:`results.atomic_save` (temporary file, fsync,
rename), so a checkpoint is either the previous one or the new one, never half of one.

Loading is guarded, in this order: the file's size against the memory budget; weights-only
unpickling (a whole pickled module is refused: loading it would run code from the file); the
SHA-256 of the payload (:func:`results.payload_sha256`: a flipped bit is one error naming the
file); every field's type; the model's size, estimated on meta tensors (``torch.device("meta")``,
no memory) with :func:`embeddings.estimate_memory` for eLCN/eFCN/FCN spaces, against ``max_bytes``;
only then the real build. Every failure is a :class:`CheckpointError` with one line.

Versions: ``needle-checkpoint/1`` files (before checksums) are still read, with a warning that they
are unverified; saving one again writes ``/2``. Plain state dicts (``torch.save(model.state_dict())``)
load into a ``model=`` given by the caller.

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
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from results._checks import check_model_attributes, check_plain, checkpoint_fields, state_mismatch
from results.durable import SHA256_KEY, atomic_save, payload_sha256

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint", "CheckpointError"]

CHECKPOINT_FORMAT = "needle-checkpoint/2"
_UNVERIFIED_FORMAT = "needle-checkpoint/1"  # before checksums: read with a warning
_KEYS = ("format", "arch", "arch_kwargs", "space", "input_shape", "state_dict", "meta")
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not fit its architecture (one-line message)."""


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **meta: Any) -> Path:
    """Save ``model`` with everything needed to rebuild it, atomically and with its checksum.

    Args:
        path: destination file (its folder is created); written with :func:`results.atomic_save`.
        model: a model from ``embeddings.build_model`` (registry name or ``"package.module:factory"``)
            or an embedding of one: it carries ``.arch``, ``.arch_kwargs``, ``.input_shape`` and ``.space``.
        **meta: plain values (numbers, strings, lists, dicts, tensors) stored under ``"meta"``,
            e.g. ``epoch=10, t_w=5, test_acc=0.91``.

    Returns:
        The path written.

    Raises:
        ValueError: the model lacks those attributes (the message says how to build it), or ``meta``
            holds objects a weights-only load cannot read (``TypeError``).
        results.DurableWriteError: the file could not be written (the previous file is intact).
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
    payload[SHA256_KEY] = payload_sha256(payload)
    return atomic_save(payload, path)


def _unpickle(path: Path, max_bytes: int) -> Any:
    """``torch.load(weights_only=True)`` with every failure as one line."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path (checkpoints are written by runners.train / runners.relax)")
    size = path.stat().st_size
    if size > max_bytes:
        raise CheckpointError(f"checkpoint {path} is {size:,} bytes, more than the memory budget of {max_bytes:,} bytes; "
                              f"pass max_bytes={size} or more (CLI: --max-bytes) to load it anyway")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = _GLOBAL.search(str(err))
        if found is None:
            raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file (UnpicklingError); re-create it") from None
        raise CheckpointError(
            f"checkpoint {path} is a pickled Python object (it needs {found.group(1)}), e.g. a whole model saved with "
            f"torch.save(model): loading it would run code stored in the file, so it is refused; where the model was made, "
            f"save torch.save(model.state_dict(), path) and load that with --model package.module:factory"
        ) from None
    except Exception as err:  # noqa: BLE001 -- a text file gives KeyError/IndexError, a cut one EOFError, ...: all mean "not a checkpoint"
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file ({type(err).__name__}); re-create it") from None


def _plain_state_dict(payload: Any) -> dict[str, torch.Tensor] | None:
    """The tensors of ``torch.save(model.state_dict())`` (or of ``{"state_dict": ...}``), else ``None``."""
    if isinstance(payload, Mapping) and "format" not in payload and isinstance(payload.get("state_dict"), Mapping):
        payload = payload["state_dict"]
    if isinstance(payload, Mapping) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload.items()):
        return dict(payload)
    return None


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    expected = model.state_dict()
    if state and all(name.startswith("module.") for name in state) and not any(name.startswith("module.") for name in expected):
        state = {name.removeprefix("module."): tensor for name, tensor in state.items()}  # saved from DataParallel
    mismatch = state_mismatch(expected, state)
    if mismatch:
        raise CheckpointError(f"checkpoint {path}: weights do not fit {what}: {mismatch}")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path}: weights do not fit {what}: {' '.join(str(err).split())[:300]}") from None


def _check_ours(path: Path, payload: dict) -> None:
    """Known version, every key present, checksum verified."""
    found = payload.get("format")
    if found not in (CHECKPOINT_FORMAT, _UNVERIFIED_FORMAT):
        raise CheckpointError(f"checkpoint {path} has format {found!r:.80}, expected {CHECKPOINT_FORMAT!r}; "
                              f"save it with results.save_checkpoint (or this toolkit is older than the file)")
    missing = [key for key in _KEYS + ((SHA256_KEY,) if found == CHECKPOINT_FORMAT else ()) if key not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the fields {missing}; re-create it with results.save_checkpoint")
    if found == _UNVERIFIED_FORMAT:
        warnings.warn(f"checkpoint {path} ({_UNVERIFIED_FORMAT}) carries no checksum and is loaded unverified; "
                      f"save it again with results.save_checkpoint to add one", stacklevel=3)
        return
    try:
        intact = payload[SHA256_KEY] == payload_sha256(payload)
    except (RecursionError, TypeError, ValueError, RuntimeError):
        intact = False  # a payload the digest cannot walk was not written by save_checkpoint
    if not intact:
        raise CheckpointError(f"checkpoint {path} fails its SHA-256 check: its contents changed after it was written "
                              f"(disk or copy error, or an edit); restore it from a copy or re-create it")


def _meta_build(arch: str, arch_kwargs: dict) -> nn.Module | None:
    """The CNN on meta tensors (shapes only, no memory); ``None`` if its factory cannot run on meta."""
    import embeddings  # deferred: only loading needs the registry

    try:
        with torch.device("meta"):
            return embeddings.build_model(arch, **arch_kwargs)
    except Exception as err:  # noqa: BLE001 -- build_model wraps a user factory's errors in ValueError
        text = f"{type(err).__name__}: {err}"
        if "overflow" in text:  # shapes whose byte count does not fit 64 bits
            raise OverflowError(f"its tensors are too large to address ({' '.join(str(err).split())[:120]})") from None
        if "meta" in text or "NotImplementedError" in text:  # code that needs real data: build it for real
            return None
        raise


def _nbytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _layout(arch: str, arch_kwargs: dict, space: str, input_shape: tuple[int, ...]) -> tuple[int, int, dict | None] | None:
    """From shapes alone: the bytes a build needs at its peak (the CNN and its embedding both exist
    while embedding), the model's bytes in ``space``, and its state dict on meta tensors where one can
    be built (CNN, eLCN; an eFCN's dense layers need data-dependent indexing, so for eFCN/FCN only its
    bytes, from :func:`embeddings.estimate_memory`). ``None`` if the factory cannot run on meta tensors."""
    import embeddings

    cnn = _meta_build(arch, arch_kwargs)
    if cnn is None:
        return None
    cnn_bytes = _nbytes(cnn.state_dict().values())
    if space == "cnn":
        return cnn_bytes, cnn_bytes, cnn.state_dict()
    if space == "elcn":
        try:
            elcn = embeddings.to_elcn(cnn, input_shape, max_bytes=2**62)  # the budget is checked by the caller
        except (NotImplementedError, RuntimeError):  # layers that need real data: their bytes from the estimate
            elcn_bytes = embeddings.estimate_memory(cnn, input_shape, "elcn") + _nbytes(cnn.buffers())
            return cnn_bytes + elcn_bytes, elcn_bytes, None
        elcn_bytes = _nbytes(elcn.state_dict().values())
        return cnn_bytes + elcn_bytes, elcn_bytes, elcn.state_dict()
    # Embedding keeps the buffers and replaces conv weights by dense ones: parameters + buffers.
    efcn_bytes = embeddings.estimate_memory(cnn, input_shape, "efcn") + _nbytes(cnn.buffers())
    return cnn_bytes + efcn_bytes, efcn_bytes, None


def _check_layout(path: Path, layout: tuple[int, int, dict | None], state_dict: dict, what: str, max_bytes: int) -> None:
    """Refuse, before any real allocation, a model over the budget or weights that cannot fit it."""
    needed, model_bytes, expected = layout
    if needed > max_bytes:
        raise CheckpointError(f"checkpoint {path} describes a model ({what}) of {needed:,} bytes, more than the memory budget of "
                              f"{max_bytes:,} bytes; pass max_bytes={needed} or more (CLI: --max-bytes) if it is meant to be that large")
    mismatch = state_mismatch(expected, state_dict) if expected is not None else ""
    stored = _nbytes(state_dict.values())
    if not mismatch and stored != model_bytes:
        mismatch = f"the file holds {stored:,} bytes of tensors, the model {model_bytes:,}"
    if mismatch:
        raise CheckpointError(f"checkpoint {path}: weights do not fit {what}: {mismatch}")


def _rebuild(arch: str, arch_kwargs: dict[str, Any], space: str, input_shape: tuple[int, ...], max_bytes: int) -> nn.Module:
    """An untrained model of the given architecture in the given space (weights to be loaded)."""
    import embeddings  # deferred: only loading needs the registry and the embeddings

    model = embeddings.build_model(arch, **arch_kwargs)
    if space == "elcn":
        model = embeddings.to_elcn(model, input_shape, max_bytes=max_bytes)
    elif space == "efcn":
        model = embeddings.to_efcn(model, input_shape, max_bytes=max_bytes)
    elif space == "fcn":
        # The random init is thrown away by load_state_dict; a fixed generator keeps this pure.
        model = embeddings.fcn_of_same_size(model, input_shape, generator=torch.Generator().manual_seed(0), max_bytes=max_bytes)
    return model


def _rebuild_ours(path: Path, payload: dict, max_bytes: int) -> tuple[nn.Module, dict[str, Any]]:
    try:
        arch, arch_kwargs, space, input_shape, state_dict, meta = checkpoint_fields(payload)
    except ValueError as err:
        raise CheckpointError(f"checkpoint {path}: {err}; re-create it with results.save_checkpoint") from None
    what = f"{arch} ({space})"
    try:
        layout = _layout(arch, arch_kwargs, space, input_shape)
        if layout is not None:
            _check_layout(path, layout, state_dict, what, max_bytes)
        model = _rebuild(arch, arch_kwargs, space, input_shape, max_bytes)
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 -- any factory may raise anything for kwargs it does not accept
        first = " ".join(str(err).split())[:300]
        raise CheckpointError(f"checkpoint {path} names an architecture that cannot be built: {first}") from None
    _load_into(model, state_dict, path, what)
    return model, meta


def load_checkpoint(
    path: str | os.PathLike,
    *,
    model: nn.Module | None = None,
    map_location: str | torch.device = "cpu",
    max_bytes: int | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved by :func:`save_checkpoint`, or load a plain state dict into ``model``.

    Args:
        path: a checkpoint of :func:`save_checkpoint`, or a ``torch.save(model.state_dict())`` file
            (``.pt`` / ``.pth``; ``{"state_dict": ...}`` and ``DataParallel``'s ``module.`` names too).
        model: the module a plain state dict is loaded into (CLIs build it from ``--model``). Our own
            checkpoints always rebuild their model and ignore it.
        map_location: device of the returned model.
        max_bytes: memory budget of the model (and of the file); default: half of the free memory on
            ``map_location`` (``embeddings.default_max_bytes``).

    Returns:
        ``(model, meta)``: the model in eval mode with its ``.arch``, ``.arch_kwargs``,
        ``.input_shape`` and ``.space`` set (for a plain state dict: ``model`` itself), and the
        ``meta`` dict given when saving (``{}`` for a plain state dict).

    Raises:
        CheckpointError: the file is missing, corrupt, a pickled object, of another format, fails its
            checksum, has a malformed field (named), is over the budget, or its weights do not fit
            the architecture; always one line.
    """
    import embeddings  # deferred: the budget's default needs the device's free memory

    path = Path(path)
    budget = int(max_bytes) if max_bytes is not None else embeddings.default_max_bytes(map_location)
    payload = _unpickle(path, budget)
    if isinstance(payload, Mapping) and isinstance(payload.get("format"), str) and payload["format"].startswith("needle-checkpoint/"):
        _check_ours(path, dict(payload))
        loaded, meta = _rebuild_ours(path, dict(payload), budget)
        return loaded.to(map_location).eval(), meta
    state = _plain_state_dict(payload)
    if state is None:
        found = payload.get("format") if isinstance(payload, Mapping) else type(payload).__name__
        raise CheckpointError(f"checkpoint {path} has format {found!r:.80}, expected {CHECKPOINT_FORMAT!r} or a state dict of "
                              f"tensors; save it with results.save_checkpoint or torch.save(model.state_dict(), path)")
    if model is None:
        raise CheckpointError(f"checkpoint {path} is a plain state dict ({len(state)} tensors) that does not say which model it "
                              f"belongs to; pass --model package.module:factory (and --input-shape, e.g. 3,32,32), or model= in Python")
    _load_into(model, state, path, f"the model given ({type(model).__name__})")
    return model.to(map_location).eval(), {}
