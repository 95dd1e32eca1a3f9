"""One writer per output folder: an exclusive lock taken before anything is read, deleted or written.

Every CLI writes below an output folder (``--out``, or the folder of an ``--out`` file). Before it
looks at what the folder holds, it takes ``<folder>/.lock`` with ``fcntl.flock`` (released by the
kernel when the process dies, so a killed job never leaves a stale lock) and writes its PID and
command line into it. A second process pointed at the same folder gets :class:`OutputLocked`, one
line naming the holder, and changes nothing. The lock is re-entrant within a process: a command
that runs others in-process (``runners.reproduce``) holds its folder's lock while they take it again.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with output_lock(folder, argv=["demo"]):
    ...     with output_lock(folder):  # the same process may take it again
    ...         pass
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["LOCK_NAME", "OutputLocked", "OutputUnwritable", "check_writable_file", "check_writable_folder", "output_lock"]

LOCK_NAME = ".lock"

# Locks this process holds: folder -> (open lock file, depth). flock belongs to an open file, so a second
# open of the same lock file in this process would conflict with the first; re-entry reuses it instead.
_HELD: dict[Path, list] = {}


class OutputLocked(RuntimeError):
    """Another process holds the output folder; the message names its PID and command."""


class OutputUnwritable(OutputLocked):
    """The output folder cannot be created or written (read-only, a file in its place, an uncreatable parent).

    A kind of :class:`OutputLocked` (the folder is closed to this process), so every command that turns a
    refused lock into one line does the same for it, before anything is computed or written.
    """


def check_writable_folder(folder: str | os.PathLike) -> None:
    """Refuse, in one line, a folder that cannot be created or written into, before anything is created.

    The nearest existing ancestor must be a folder this process may write into (``os.access``; a
    process with root rights passes it, and the creation below still reports what the system refuses).

    Raises:
        OutputUnwritable: a file stands where a folder should be, or the folder (or the nearest
            existing ancestor it would be created in) is not writable.
    """
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputUnwritable(f"cannot write into {folder}: {existing} is a file, not a folder; choose another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        made = "" if existing == folder else f" to create {folder} in"
        raise OutputUnwritable(f"cannot write into {folder}: {existing} is not writable{made} (read-only or not yours); "
                               "choose another --out or change its permissions")


def check_writable_file(path: str | os.PathLike) -> None:
    """Refuse, in one line, a result file that cannot be written: a folder in its place, or a file not writable.

    Raises:
        OutputUnwritable: as :func:`check_writable_folder` for its folder, or the file itself is refused.
    """
    path = Path(path).absolute()
    if path.is_dir():
        raise OutputUnwritable(f"cannot write {path}: it is a folder, not a result file; choose another --out "
                               f"(e.g. {path / 'results.h5'})")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputUnwritable(f"cannot write {path}: the file is read-only; choose another --out or change its permissions")
    check_writable_folder(path.parent)


def _holder(path: Path) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        text = ""
    pid, _, command = text.partition("\n")
    return f"PID {pid} ({command.strip()[:200] or 'command unknown'})" if pid else "another process"


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, *, argv: Sequence[str] | None = None) -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (created when missing) for the block.

    Args:
        folder: the output folder.
        argv: the command line recorded in the lock file (default: ``sys.argv``).

    Yields:
        The lock file's path.

    Raises:
        OutputLocked: another process holds the folder (nothing was changed).
        OutputUnwritable: the folder cannot be created or written (:func:`check_writable_folder`).
    """
    folder = Path(folder).resolve()
    held = _HELD.get(folder)
    if held is not None:
        held[1] += 1
        try:
            yield folder / LOCK_NAME
        finally:
            held[1] -= 1
        return
    check_writable_folder(folder)
    path = folder / LOCK_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # not "w": truncating would erase the holder's PID before we know we may
    except OSError as err:  # what the check cannot see: a read-only mount for root, a parent the system refuses
        raise OutputUnwritable(f"cannot write into {folder}: {err.strerror} ({err.filename}); choose another --out") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise OutputLocked(f"{folder} is in use by {_holder(path)}; wait for it to end (or stop it) or choose "
                           "another --out") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n{' '.join(sys.argv if argv is None else argv)}\n")
    handle.flush()
    _HELD[folder] = [handle, 1]
    try:
        yield path
    finally:
        _HELD.pop(folder, None)
        handle.close()  # closing releases the flock; the file stays (removing it would race a waiting process)
