"""Functions named by an import path ``package.module:function``, for ``--data`` and ``--loss``.

The path is resolved by ``embeddings.import_object`` (which ``--model`` resolves through too), so the
three flags import a user's own file the same way and say the same one line when they cannot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from embeddings import import_object

__all__ = ["is_import_path", "import_function"]


def is_import_path(text: str) -> bool:
    """Whether ``text`` has the form ``package.module:function`` (both parts non-empty).

    Example:
        >>> is_import_path("mypkg.data:load"), is_import_path("npz"), is_import_path(":load")
        (True, False, False)
    """
    module, colon, attribute = text.partition(":")
    return bool(colon and module.strip() and attribute.strip())


def import_function(path: str, *, what: str) -> Callable[..., Any]:
    """The callable that ``path`` (``"package.module:attr[.attr]"``) names.

    Args:
        path: the import path.
        what: what it is for, opening every message (e.g. ``"--loss mylosses:focal"``).

    Raises:
        ValueError: one line: a malformed path, a module that cannot be imported (or fails while
            importing), a missing attribute, or one that is not callable.

    Example:
        >>> import_function("math:sqrt", what="demo")(9.0)
        3.0
    """
    if not is_import_path(path):
        raise ValueError(f"{what}: expected an import path 'package.module:function', got {path!r}")
    try:
        target = import_object(path)
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from None
    if not callable(target):
        raise ValueError(f"{what}: {path!r} is a {type(target).__name__}, not a function")
    return target

