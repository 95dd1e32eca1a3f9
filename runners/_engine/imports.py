"""Functions named by an import path ``package.module:function``, for ``--data`` and ``--loss``.

The module is imported the way Python imports any module (``sys.path``: the current folder under
``python -m``, and ``PYTHONPATH``), so a user's own file works without being installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

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
    module_name, _, attribute = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"{what}: cannot import module {module_name!r} ({_first_line(err)}); check the spelling, "
                         "that it is installed, and that its folder is on PYTHONPATH") from None
    except Exception as err:  # the user's module failed while importing: one line, not its traceback
        raise ValueError(f"{what}: importing module {module_name!r} raised {type(err).__name__}: {_first_line(err)}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"{what}: module {module_name!r} has no attribute {attribute!r}; check the name after ':'")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{what}: {path!r} is a {type(target).__name__}, not a function")
    return target


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
