"""Input checks at the boundary of ``results``: each message says what was expected, what was received
and what to do."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

SPACES = ("cnn", "elcn", "efcn", "fcn")

# Types that ``torch.load(..., weights_only=True)`` reads back without executing code.
_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def check_plain(value: Any, where: str) -> None:
    """Refuse values a weights-only unpickler cannot read back (objects, arrays, functions)."""
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where} keys must be str or int, got {key!r}; convert the key to a string")
            check_plain(item, f"{where}[{key!r}]")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_plain(item, f"{where}[{index}]")
        return
    raise TypeError(
        f"{where} must hold only str/int/float/bool/None, tensors, lists, tuples and dicts so that "
        f"torch.load(weights_only=True) can read it, got {type(value).__name__}; convert it first "
        f"(e.g. .tolist() for arrays, str() for paths)"
    )


def check_model_attributes(model: torch.nn.Module) -> tuple[str, dict, tuple[int, ...], str]:
    """The attributes ``build_model`` and the embeddings put on a model, needed to rebuild it."""
    missing = [name for name in ("arch", "arch_kwargs", "input_shape", "space") if not hasattr(model, name)]
    if missing:
        raise ValueError(
            f"model has no {', '.join('.' + name for name in missing)}, so a checkpoint could not rebuild it; build it with "
            f"embeddings.build_model(\"package.module:factory\", input_shape=..., **kwargs) (or a registry name), or "
            f"save its weights alone with torch.save(model.state_dict(), path)"
        )
    if model.space not in SPACES:
        raise ValueError(f"model.space must be one of {', '.join(SPACES)}, got {model.space!r}")
    if model.input_shape is None:
        raise ValueError(f"model.input_shape is unknown, so a checkpoint could not embed or probe it; build it with "
                         f"embeddings.build_model({model.arch!r}, input_shape=(C, H, W), ...)")
    check_plain(model.arch_kwargs, "model.arch_kwargs")
    return model.arch, dict(model.arch_kwargs), tuple(int(s) for s in model.input_shape), model.space


def _kind(value: Any) -> str:
    return type(value).__name__


def checkpoint_fields(payload: Mapping[str, Any]) -> tuple[str, dict, str, tuple[int, ...], dict, dict]:
    """Validate the fields of a checkpoint payload read back with ``weights_only=True``.

    Returns ``(arch, arch_kwargs, space, input_shape, state_dict, meta)``; raises ``ValueError``
    naming the first malformed field (the caller adds the file's name).
    """
    arch, arch_kwargs, space = payload["arch"], payload["arch_kwargs"], payload["space"]
    input_shape, state_dict, meta = payload["input_shape"], payload["state_dict"], payload["meta"]
    if not isinstance(arch, str) or not arch:
        raise ValueError(f"field 'arch' must be a registry name or 'package.module:factory', got {_kind(arch)} {arch!r:.80}")
    if not isinstance(arch_kwargs, Mapping) or any(not isinstance(key, str) for key in arch_kwargs):
        raise ValueError(f"field 'arch_kwargs' must be a dict of keyword arguments (str keys), got {_kind(arch_kwargs)}")
    if space not in SPACES:
        raise ValueError(f"field 'space' must be one of {', '.join(SPACES)}, got {space!r:.80}")
    if (not isinstance(input_shape, (list, tuple)) or not 1 <= len(input_shape) <= 4
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in input_shape)):
        raise ValueError(f"field 'input_shape' must be 1 to 4 positive ints, e.g. (1, 40), got {input_shape!r:.80}")
    if not isinstance(state_dict, Mapping) or any(
            not isinstance(key, str) or not isinstance(value, torch.Tensor) for key, value in state_dict.items()):
        raise ValueError("field 'state_dict' must be a dict of parameter names to tensors")
    if not isinstance(meta, Mapping):
        raise ValueError(f"field 'meta' must be a dict, got {_kind(meta)}")
    for name, value in (("arch_kwargs", arch_kwargs), ("meta", meta)):
        try:
            check_plain(value, name)
        except TypeError as err:
            raise ValueError(f"field {err}") from None
        except RecursionError:
            raise ValueError(f"field {name!r} is nested too deeply to be plain values") from None
    return arch, dict(arch_kwargs), space, tuple(input_shape), dict(state_dict), dict(meta)


def state_mismatch(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]) -> str:
    """One line saying how a state dict differs from a model's (names and shapes), or ``""`` if it fits."""
    missing = [name for name in expected if name not in found]
    unexpected = [name for name in found if name not in expected]
    shapes = [f"{name}: file {tuple(found[name].shape)} vs model {tuple(tensor.shape)}"
              for name, tensor in expected.items() if name in found and found[name].shape != tensor.shape]
    parts = [f"{label} {len(names)} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
             for label, names in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)) if names]
    return "; ".join(parts)


def check_columns(columns: Sequence[str], index: str) -> tuple[str, ...]:
    columns = tuple(columns)
    if not columns or any(not isinstance(c, str) or not c or "/" in c for c in columns):
        raise ValueError(f"columns must be non-empty names without '/', got {columns!r}")
    if len(set(columns)) != len(columns):
        raise ValueError(f"columns must be distinct, got {columns!r}")
    if index not in columns:
        raise ValueError(f"the index {index!r} must be one of the columns {columns!r}; add it to columns")
    return columns


def check_row(row: Mapping[str, Any], columns: tuple[str, ...]) -> dict[str, float]:
    missing = [c for c in columns if c not in row]
    extra = [c for c in row if c not in columns]
    if missing or extra:
        raise ValueError(
            f"a row needs exactly the columns {list(columns)}; missing {missing}, unexpected {extra} "
            f"(write float('nan') for a value that does not apply)"
        )
    values = {}
    for name in columns:
        value = row[name]
        if isinstance(value, torch.Tensor):
            value = value.item()
        try:
            values[name] = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"column {name!r} takes numbers, got {value!r}") from None
    return values


def check_length(length: int, current: int) -> int:
    if not isinstance(length, int) or isinstance(length, bool) or not 0 <= length <= current:
        raise ValueError(f"a curve of {current} points can be cut to 0..{current} points, got {length!r}")
    return length
