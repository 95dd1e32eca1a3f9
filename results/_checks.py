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
            f"model has no {', '.join('.' + name for name in missing)}; save models made by "
            f"embeddings.build_model (or embedded from one) so that the checkpoint can rebuild them"
        )
    if model.space not in SPACES:
        raise ValueError(f"model.space must be one of {', '.join(SPACES)}, got {model.space!r}")
    check_plain(model.arch_kwargs, "model.arch_kwargs")
    return model.arch, dict(model.arch_kwargs), tuple(int(s) for s in model.input_shape), model.space


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
