"""The one result writer of every CLI: a named result in an HDF5 file that may hold several.

A *result* is one group of a result file (``runs`` of a relax protocol, ``runs/<name>`` of a single
training, ``interpolation/<name>`` of a path, ``sharpness`` of a probe series, ``weights``), written
by one tool. :func:`open_result` applies one rule to every tool:

* a **new** name is added to the file (created when missing) with no flag: other results stay;
* ``resume=True`` continues an existing name; its stored configuration must equal the new one;
* ``overwrite=True`` replaces that name **only**: its group is deleted and recreated, every other
  result of the file is kept;
* an existing name with neither flag is refused, and nothing is changed.

Provenance (command line, package versions, git commit, seed, time), the writing ``tool`` and its
``config`` (JSON) are attributes of the result's group; the file's root holds the provenance of the
file's creator. The file is opened (and locked by HDF5) before anything is deleted, so a second
process pointed at a file in use fails before it touches the first one's results. Paths stored in a
file are relative to the file's own folder (:meth:`Result.relative`, :meth:`Result.resolve`).

Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "demo.h5")
    >>> with open_result(path, "interpolation/a", tool="demo", config={"points": 3}) as result:
    ...     result.group.attrs["barrier"] = 0.5
    >>> with open_result(path, "interpolation/b", tool="demo", config={"points": 5}) as result:
    ...     result.resumed
    False
    >>> with open_result(path, "interpolation/a", tool="demo", config={"points": 3}, overwrite=True) as result:
    ...     sorted(result_names(result.file)), "barrier" in result.group.attrs
    (['interpolation/a', 'interpolation/b'], False)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py

from results.store import provenance, read_attrs, write_attrs

__all__ = ["Result", "ResultError", "open_result", "result_names", "check_result_name"]

# The attribute that marks a group as a result; its value is the writing tool.
_TOOL = "tool"
_NAME_PART = re.compile(r"^[A-Za-z0-9_+=-][A-Za-z0-9_.+=-]*$")


class ResultError(ValueError):
    """A result cannot be opened as asked; the message says which flag or name to use instead."""


def check_result_name(name: str) -> str:
    """Return ``name`` if it is a safe result name: ``/``-separated parts of letters, digits, ``_.+=-``.

    Example:
        >>> check_result_name("interpolation/tw0")
        'interpolation/tw0'
        >>> check_result_name("../x")
        Traceback (most recent call last):
        ...
        results.writer.ResultError: result name '../x' has an empty, '.' or '..' part or characters other than letters, digits and _.+=-; choose another --name
    """
    parts = name.split("/") if isinstance(name, str) else [""]
    if not all(_NAME_PART.match(part) and part not in (".", "..") for part in parts):
        raise ResultError(f"result name {name!r} has an empty, '.' or '..' part or characters other than "
                          "letters, digits and _.+=-; choose another --name")
    return name


def result_names(file: h5py.File) -> list[str]:
    """Names of the results held by ``file`` (groups carrying a ``tool`` attribute), sorted."""
    found: list[str] = []

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Group) and _TOOL in obj.attrs:
            found.append(name)

    file.visititems(visit)
    return sorted(found)


def _normalised(config: Mapping[str, Any]) -> dict[str, Any]:
    # JSON round trip: tuples become lists, as they come back from the file.
    return json.loads(json.dumps(dict(config), sort_keys=True, default=str))


class Result:
    """An open named result: its ``group``, its ``file`` and whether it was ``resumed``.

    Use it as a context manager (the file is closed on exit), or call :meth:`close`.
    """

    def __init__(self, file: h5py.File, group: h5py.Group, resumed: bool) -> None:
        self.file = file
        self.group = group
        self.resumed = resumed
        self.folder = Path(file.filename).resolve().parent

    def relative(self, path: str | os.PathLike) -> str:
        """``path`` as stored in the file: relative to the file's folder."""
        return os.path.relpath(Path(path).resolve(), self.folder)

    def resolve(self, stored: str | os.PathLike) -> Path:
        """A path stored by :meth:`relative` (or an absolute one) as a usable path."""
        return self.folder / stored

    def write_attrs(self, values: Mapping[str, Any]) -> None:
        """Attributes of the result's group (``results.write_attrs`` rules)."""
        write_attrs(self.group, values)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Result:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _open_file(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "a")
    except OSError as err:
        text = str(err).lower()
        if "lock" in text:
            raise ResultError(f"{path} is open in another process (a running job?); wait for it to end or choose "
                              "another output file") from None
        raise ResultError(f"{path} exists but is not a readable HDF5 file ({str(err).splitlines()[0]}); move it away or "
                          "choose another output file") from None


def _check_nesting(file: h5py.File, name: str, path: Path) -> None:
    for other in result_names(file):
        if other == name:
            continue
        if name.startswith(other + "/"):
            raise ResultError(f"result {name!r} would lie inside the result {other!r} of {path} "
                              f"(written by {file[other].attrs[_TOOL]}); choose another --name or output file")
        if other.startswith(name + "/"):
            raise ResultError(f"result {name!r} would contain the result {other!r} of {path} "
                              f"(written by {file[other].attrs[_TOOL]}); choose another --name or output file")


def _changed_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def open_result(
    path: str | os.PathLike,
    name: str,
    *,
    tool: str,
    config: Mapping[str, Any],
    resume: bool = False,
    overwrite: bool = False,
    seed: int | None = None,
    argv: Sequence[str] | None = None,
) -> Result:
    """Open the result ``name`` of the file ``path`` for writing, by the module's one rule.

    Args:
        path: the ``.h5`` file; created (with its folder) when missing.
        name: the result's group path, e.g. ``"interpolation/tw0"`` (see :func:`check_result_name`).
        tool: the writing command, e.g. ``"runners.interpolate"``.
        config: every option that changes the numbers; a resume with another config is refused.
        resume: continue ``name`` (a missing one is created).
        overwrite: replace ``name`` (and only it).
        seed: recorded with the provenance.
        argv: the command line to record (default: ``sys.argv``).

    Returns:
        The open :class:`Result`.

    Raises:
        ResultError: both flags; an unsafe name; the file is locked by another process or unreadable;
            ``name`` exists and neither flag was given; a resume with another tool or configuration;
            ``name`` nested inside (or around) another result.
    """
    if resume and overwrite:
        raise ResultError("--resume and --overwrite contradict each other; choose one")
    check_result_name(name)
    path = Path(path)
    config = _normalised(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    file = _open_file(path)
    try:
        _check_nesting(file, name, path)
        stamp = {**provenance(seed=seed, argv=argv), _TOOL: tool}
        if not file.attrs.get("created_by"):
            write_attrs(file, {**provenance(argv=argv), "created_by": tool})
        existing = file.get(name)
        if existing is not None and not isinstance(existing, h5py.Group):
            raise ResultError(f"{name!r} in {path} is a dataset, not a result; choose another --name")
        is_result = existing is not None and _TOOL in existing.attrs
        if existing is not None and not is_result and len(existing):
            raise ResultError(f"{name!r} in {path} holds data written by no known tool; choose another --name or output file")
        if is_result and not (resume or overwrite):
            raise ResultError(f"result {name!r} already exists in {path}; pass --resume to continue it or --overwrite to "
                              "replace it (other results in the file are kept), or choose another --name")
        if is_result and resume:
            stored = read_attrs(existing)
            if stored[_TOOL] != tool:
                raise ResultError(f"result {name!r} in {path} was written by {stored[_TOOL]}, not {tool}; choose another "
                                  "--name or output file")
            before = json.loads(stored.get("config", "{}"))
            if before != config:
                raise ResultError(f"--resume with other options than result {name!r} in {path} (changed: "
                                  f"{', '.join(_changed_keys(before, config))}); use the same options or --overwrite")
            write_attrs(existing, {"resumed_command": stamp["command"], "resumed_utc": stamp["created_utc"]})
            return Result(file, existing, resumed=True)
        if existing is not None:
            del file[name]
        group = file.require_group(name)
        write_attrs(group, {**stamp, "config": config})
        return Result(file, group, resumed=False)
    except BaseException:
        file.close()
        raise
