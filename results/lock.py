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

__all__ = ["LOCK_NAME", "OutputLocked", "output_lock"]

LOCK_NAME = ".lock"

# Locks this process holds: folder -> (open lock file, depth). flock belongs to an open file, so a second
# open of the same lock file in this process would conflict with the first; re-entry reuses it instead.
_HELD: dict[Path, list] = {}


class OutputLocked(RuntimeError):
    """Another process holds the output folder; the message names its PID and command."""


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
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    handle = open(path, "a+")  # not "w": truncating would erase the holder's PID before we know we may
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
