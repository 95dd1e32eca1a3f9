"""The one result writer of every CLI: a named result in an HDF5 file that may hold several.

A *result* is one group of a result file (``runs`` of a relax protocol, ``runs/<name>`` of a single
training, ``interpolation/<name>`` of a path, ``sharpness`` of a probe series, ``weights``), written
by one tool. :func:`open_result` applies one rule to every tool:

* a **new** name is added to the file (created when missing) with no flag: other results stay;
* ``resume=True`` continues an existing name; its stored configuration must equal the new one;
* ``overwrite=True`` replaces that name **only**, every other result of the file is kept: the new
  result is written under ``/.pending/<name>`` and moved over the old one when it is closed without an
  error (:meth:`Result.close`), so a failed or killed overwrite leaves the old result whole;
* an existing name with neither flag is refused, and nothing is changed.

Provenance (command line, package versions, git commit, seed, time), the writing ``tool`` and its
``config`` (JSON) are attributes of the result's group; the file's root holds the provenance of the
file's creator. Before the file is even looked at, the output folder's lock is taken
(:func:`results.lock.output_lock`) and held until the result is closed, so a second process pointed at
a folder in use fails, naming the holder, before it touches the first one's results. The name is
checked first (:func:`check_result_name`). Paths stored in a file are relative to the file's own
folder (:meth:`Result.relative`, :meth:`Result.resolve`).

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

import contextlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py

from results.recovery import (DamagedStore, StoreFull, check_free_space, disk_full_message, is_disk_full, open_checked, release,
                              reserve, snapshot)
from results.durable import DurableWriteError
from results.lock import OutputLocked, check_writable_file, output_lock
from results.store import provenance, read_attrs, write_attrs

__all__ = ["Result", "ResultError", "open_result", "result_names", "check_result_name", "PENDING"]

# The attribute that marks a group as a result; its value is the writing tool.
_TOOL = "tool"
_NAME_PART = re.compile(r"^[A-Za-z0-9_+=-][A-Za-z0-9_.+=-]*$")
# Where an --overwrite writes its new result until it is complete (a leading dot: no result name can start so).
PENDING = ".pending"


class ResultError(ValueError):
    """A result cannot be opened as asked; the message says which flag or name to use instead."""


def check_result_name(name: str) -> str:
    """Return ``name`` if it is a safe result name: ``/``-separated parts of letters, digits, ``_.+=-``, no leading dot.

    The same rule serves run names, which also name folders (``checkpoints/<run>``): a safe name
    never leaves the output folder.

    Example:
        >>> check_result_name("interpolation/tw0")
        'interpolation/tw0'
        >>> check_result_name("../x")
        Traceback (most recent call last):
        ...
        results.writer.ResultError: result name '../x' has an empty part, a part starting with '.' or characters other than letters, digits and _.+=-; choose another --name
    """
    parts = name.split("/") if isinstance(name, str) else [""]
    if not all(_NAME_PART.match(part) for part in parts):
        raise ResultError(f"result name {name!r} has an empty part, a part starting with '.' or characters other than "
                          "letters, digits and _.+=-; choose another --name")
    return name


def result_names(file: h5py.File) -> list[str]:
    """Names of the results held by ``file`` (groups carrying a ``tool`` attribute), sorted; pending ones excluded."""
    found: list[str] = []

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Group) and _TOOL in obj.attrs and not name.startswith(PENDING + "/"):
            found.append(name)

    file.visititems(visit)
    return sorted(found)


def _normalised(config: Mapping[str, Any]) -> dict[str, Any]:
    # JSON round trip: tuples become lists, as they come back from the file.
    return json.loads(json.dumps(dict(config), sort_keys=True, default=str))


class Result:
    """An open named result: its ``group``, its ``file`` and whether it was ``resumed``.

    Use it as a context manager: on a normal exit an overwrite's new result replaces the old one
    (:meth:`close`); on an exception it is discarded and the old result stays (a full disk becomes one
    :class:`ResultError` line saying what is intact). The output folder's lock is released when the
    result is closed.
    """

    def __init__(self, file: h5py.File, group: h5py.Group, resumed: bool, *, name: str | None = None,
                 held: contextlib.ExitStack | None = None) -> None:
        self.file = file
        self.group = group
        self.resumed = resumed
        self.path = Path(file.filename).resolve()
        self.folder = self.path.parent
        self._name = name  # set when ``group`` is pending: the name it replaces at commit
        self._held = held or contextlib.ExitStack()  # the output folder's lock

    @property
    def pending(self) -> bool:
        """Whether this is an overwrite not yet committed (the old result is still the file's)."""
        return self._name is not None

    def relative(self, path: str | os.PathLike) -> str:
        """``path`` as stored in the file: relative to the file's folder."""
        return os.path.relpath(Path(path).resolve(), self.folder)

    def resolve(self, stored: str | os.PathLike) -> Path:
        """A path stored by :meth:`relative` (or an absolute one) as a usable path."""
        return self.folder / stored

    def write_attrs(self, values: Mapping[str, Any]) -> None:
        """Attributes of the result's group (``results.write_attrs`` rules)."""
        write_attrs(self.group, values)

    def close(self, *, commit: bool = True) -> None:
        """Close the file; ``commit``: an overwrite's new result replaces the old one, else it is dropped.

        The file's disk reserve is given back first (``results.recovery.reserve``): on a disk that filled
        up, HDF5 then has room to flush its metadata, and the file stays whole.
        """
        release(self.path)
        try:
            if self.file.id.valid and self._name is not None:
                self._finish_pending(commit)
            if self.file.id.valid and commit:
                snapshot(self.file)
        finally:
            try:
                if self.file.id.valid:
                    self.file.close()
            finally:
                self._held.close()

    def _finish_pending(self, commit: bool) -> None:
        name, source = self._name, self.group.name
        self._name = None
        if commit:
            if name in self.file:
                del self.file[name]
            parent = name.rpartition("/")[0]
            if parent:
                self.file.require_group(parent)
            self.file.move(source, name)
            self.group = self.file[name]
        _drop_pending(self.file, name)  # dropped or, once moved, the folders it leaves empty
        self.file.flush()

    def __enter__(self) -> Result:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.close(commit=kind is None)
        if is_disk_full(error) and not isinstance(error, DurableWriteError):  # a checkpoint's error names its own file
            # HDF5 says so in a long chained message: the disk, the file and its copy in one line
            raise ResultError(disk_full_message(self.path)) from None


def _drop_pending(file: h5py.File, name: str) -> None:
    """Delete ``/.pending/<name>`` if present, then the pending tree's groups left empty, up to ``/.pending``."""
    parts = [PENDING, *name.split("/")]
    if "/".join(parts) in file:
        del file["/".join(parts)]
    for depth in range(len(parts) - 1, 0, -1):
        member = "/".join(parts[:depth])
        if member in file and not len(file[member]):
            del file[member]


def _open_file(path: Path) -> h5py.File:
    try:
        return open_checked(path)
    except DamagedStore as err:
        raise ResultError(str(err)) from None
    except OSError as err:
        if "unable to lock" in str(err).lower():
            raise ResultError(f"{path} is open in another process (a reader?); wait for it to end or choose "
                              "another output file") from None
        raise ResultError(str(err)) from None


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
    needed_bytes: int = 0,
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
        argv: the command line to record (default: ``sys.argv``); also written into the folder's lock.
        needed_bytes: what the run will write beside the file (checkpoints, states): with the file's own
            growth, the free space it needs before it starts (:func:`results.recovery.check_free_space`).

    Returns:
        The open :class:`Result`.

    Raises:
        ResultError: both flags; an unsafe name; the output folder is locked by another process; too
            little free space; the file is unreadable or damaged (the message offers the last good copy);
            ``name`` exists and neither flag was given; a resume with another tool or configuration;
            ``name`` nested inside (or around) another result.
    """
    if resume and overwrite:
        raise ResultError("--resume and --overwrite contradict each other; choose one")
    check_result_name(name)
    path = Path(path)
    config = _normalised(config)
    held = contextlib.ExitStack()
    try:
        check_writable_file(path)  # before the lock creates the folder: an unwritable output is one line, nothing made
        held.enter_context(output_lock(path.parent, argv=argv))
    except OutputLocked as err:  # OutputUnwritable included
        raise ResultError(str(err)) from None
    try:
        check_free_space(path, needed_bytes)
        file = _open_file(path)
    except StoreFull as err:
        held.close()
        raise ResultError(str(err)) from None
    except BaseException:
        held.close()
        raise
    try:
        reserve(path)
    except BaseException as err:
        file.close()
        held.close()
        if isinstance(err, StoreFull):
            raise ResultError(str(err)) from None
        raise
    try:
        return _open_group(file, path, name, tool=tool, config=config, resume=resume, overwrite=overwrite,
                           stamp={**provenance(seed=seed, argv=argv), _TOOL: tool}, argv=argv, held=held)
    except BaseException as err:
        release(path)
        file.close()
        held.close()
        if isinstance(err, StoreFull):
            raise ResultError(str(err)) from None
        if isinstance(err, (OSError, RuntimeError, KeyError, TypeError, RecursionError, AttributeError)):
            raise ResultError(f"{path} is damaged or was not written by this toolkit: reading result {name!r} failed "
                              f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); --overwrite it or "
                              "choose another output file") from None
        raise


def _stored_config(group: h5py.Group, name: str, path: Path) -> tuple[str, dict[str, Any]]:
    """The ``tool`` and ``config`` a result was written with, checked: a crafted or damaged group is one ResultError."""
    tool, text = group.attrs.get(_TOOL), group.attrs.get("config", "{}")
    tool = tool.decode() if isinstance(tool, bytes) else tool
    text = text.decode() if isinstance(text, bytes) else text
    try:
        if not isinstance(tool, str) or not isinstance(text, str) or len(text) > 1_000_000:
            raise TypeError("tool and config must be short strings")
        config = json.loads(text)
        if not isinstance(config, dict):
            raise TypeError(f"config is a JSON {type(config).__name__}, not an object")
    except (ValueError, TypeError, RecursionError) as err:
        raise ResultError(f"result {name!r} in {path} has a malformed tool or config attribute ({type(err).__name__}: "
                          f"{str(err).splitlines()[0][:120]}); --overwrite it or choose another output file") from None
    return tool, config


def _open_group(file: h5py.File, path: Path, name: str, *, tool: str, config: dict[str, Any], resume: bool, overwrite: bool,
                stamp: dict[str, Any], argv: Sequence[str] | None, held: contextlib.ExitStack) -> Result:
    pending = f"{PENDING}/{name}"
    _drop_pending(file, name)  # a killed overwrite's unfinished result: the old one (if any) is the file's
    _check_nesting(file, name, path)
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
        stored_tool, before = _stored_config(existing, name, path)
        if stored_tool != tool:
            raise ResultError(f"result {name!r} in {path} was written by {stored_tool}, not {tool}; choose another "
                              "--name or output file")
        if before != config:
            raise ResultError(f"--resume with other options than result {name!r} in {path} (changed: "
                              f"{', '.join(_changed_keys(before, config))}); use the same options or --overwrite")
        write_attrs(existing, {"resumed_command": stamp["command"], "resumed_utc": stamp["created_utc"]})
        snapshot(file)
        return Result(file, existing, resumed=True, held=held)
    if is_result:  # overwrite: the new result is written beside the old one and replaces it at commit
        group = file.require_group(pending)
        write_attrs(group, {**stamp, "config": config})
        snapshot(file)
        return Result(file, group, resumed=False, name=name, held=held)
    if existing is not None:
        del file[name]
    group = file.require_group(name)
    write_attrs(group, {**stamp, "config": config})
    snapshot(file)
    return Result(file, group, resumed=False, held=held)
