"""A result file that survives a full disk or a kill: free space checked first, a last good copy kept.

HDF5 updates its metadata in place: a write that fails half-way (no space left on device, a kill at
the wrong moment) can leave a file no library opens again (``addr overflow``, ``bad local heap
signature``). So every file written through ``results.open_result`` keeps a **last good copy**
``<file>.good`` beside it, taken at its commit points -- when a result is opened, every
:data:`SNAPSHOT_EVERY` seconds while points are appended (:func:`commit_point`), and when it is
closed -- by copying the flushed file to a temporary name, fsyncing it and renaming it over the old
copy (a failed copy leaves the previous one). While a file is open, :func:`reserve` holds 1 MiB of
disk beside it that is given back before the file is closed, so HDF5 can flush its metadata even on a
disk that filled up meanwhile: the file stays whole. :func:`open_checked` opens a file and walks its objects;
a damaged one is :class:`DamagedStore`, one line that offers the copy, and :func:`restore_store`
(``python -m runners.repair FILE``) puts the copy back, keeping the damaged file beside it, after which
``--resume`` continues from the copy's points (the runs' own state files hold their progress).
:func:`check_free_space` refuses to start without room for the file, its copy and the run's side files.

Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "r.h5")
    >>> with open_checked(path) as f:
    ...     f["x"] = [1.0]
    ...     snapshot(f)
    >>> with open(path, "r+b") as raw:  # the superblock destroyed
    ...     _ = raw.write(b"\\0" * 64)
    >>> try:
    ...     open_checked(path)
    ... except DamagedStore as err:
    ...     print(str(err).split("; ")[1][:28])
    its last good copy r.h5.good
    >>> with open_checked(path) if restore_store(path) else None as f:
    ...     float(f["x"][0])
    1.0
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path

import h5py

__all__ = ["GOOD_SUFFIX", "SNAPSHOT_EVERY", "DamagedStore", "StoreFull", "check_free_space", "open_checked", "snapshot",
           "commit_point", "flush", "check_room", "restore_store", "good_copy", "is_disk_full", "disk_full_message", "reserve", "release"]

GOOD_SUFFIX = ".good"
# Seconds between two copies while a result grows: a copy of a results file (KB to a few MB) is cheap,
# and a full disk loses at most this much of the curves (the runs' state files keep their progress).
SNAPSHOT_EVERY = 30.0
# Room kept free beyond the estimate: HDF5 metadata, a checkpoint's temporary copy, the reserve.
_MARGIN = 4 * 2**20
# Disk held back while a result file is open and given back before it is closed (:func:`reserve`).
RESERVE_BYTES = 2**20
RESERVE_SUFFIX = ".reserve"
# Free bytes under which a result file stops writing (its next flush would not fit: HDF5 writes tens of KB).
LOW_WATER = 256 * 2**10

# Files opened by open_result, by path: when their last good copy was taken.
_SNAPSHOTS: dict[str, float] = {}


class DamagedStore(OSError):
    """A result file HDF5 cannot read back; the message names the fix (the last good copy, if any)."""


class StoreFull(OSError):
    """No room to write (or to start writing) a result file; the message says what is intact."""


def good_copy(path: str | os.PathLike) -> Path:
    """The last good copy of the result file ``path``."""
    return Path(f"{path}{GOOD_SUFFIX}")


def _free(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` is a write that failed for want of space (h5py puts the errno only in the text)."""
    # HDF5 raises OSError from a write and RuntimeError from a flush ("Can't flush cache ... errno = 28").
    return isinstance(err, (OSError, RuntimeError)) and (getattr(err, "errno", None) == errno.ENOSPC
                                                         or "no space left" in str(err).lower())


def disk_full_message(path: str | os.PathLike) -> str:
    """The one line of a full disk while writing the result file ``path``."""
    path = Path(path)
    good = good_copy(path)
    kept = (f"its last good copy {good.name} (from {time.strftime('%H:%M:%S UTC', time.gmtime(good.stat().st_mtime))}) is "
            "intact: free space, then run again with --resume (it offers to restore the copy if the file is damaged)"
            if good.exists() else "free space, then run again")
    return f"no space left on device while writing {path}; {_free(path.parent)} bytes free; {kept}"


def check_free_space(path: str | os.PathLike, needed_bytes: int = 0) -> None:
    """Refuse to start writing ``path`` without room for it, its good copy and ``needed_bytes`` of side files.

    Raises:
        StoreFull: less free space than the estimate (nothing was written).
    """
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    size = path.stat().st_size if path.exists() else 0
    needed = 2 * size + int(needed_bytes) + _MARGIN
    free = _free(folder)
    if free < needed:
        raise StoreFull(f"only {free / 2**20:.1f} MiB free in {folder}; this run needs about {needed / 2**20:.1f} MiB (the results "
                        f"file and its good copy {2 * size / 2**20:.1f} MiB, checkpoints and states {needed_bytes / 2**20:.1f} MiB, "
                        f"{_MARGIN / 2**20:.0f} MiB margin); free space or choose another --out")


def _damaged(path: Path, err: BaseException) -> DamagedStore:
    reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
    good = good_copy(path)
    if good.exists():
        fix = (f"its last good copy {good.name} (from {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(good.stat().st_mtime))}) "
               f"holds every result up to its last commit point: restore it with `python -m runners.repair {path}` "
               "(the damaged file is kept beside it), then run again with --resume")
    else:
        fix = "it has no good copy: move it away or choose another output file"
    return DamagedStore(f"{path} is damaged: not a readable HDF5 file ({reason}); {fix}")


def _walk(file: h5py.File) -> None:
    """Touch every object's header and attribute names: damaged metadata fails here, not half-way through a run."""
    def visit(_name: str, obj) -> None:
        list(obj.attrs.keys())

    list(file.attrs.keys())
    file.visititems(visit)


def open_checked(path: str | os.PathLike, mode: str = "a") -> h5py.File:
    """Open the result file ``path`` (``"a"``: created when missing; ``"r"``) after checking that it is whole.

    Raises:
        DamagedStore: the file exists but cannot be read back (one line; offers the good copy).
        OSError: HDF5 refuses to lock the file (another process has it open).
    """
    path = Path(path)
    try:
        file = h5py.File(path, mode)
    except OSError as err:
        if "unable to lock" in str(err).lower() or not path.exists():
            raise
        raise _damaged(path, err) from None
    try:
        _walk(file)
    except (OSError, RuntimeError, KeyError, ValueError, SystemError) as err:
        file.close()
        raise _damaged(path, err) from None
    if mode != "r":
        _SNAPSHOTS.setdefault(os.fspath(path.resolve()), 0.0)
    return file


def snapshot(file: h5py.File) -> None:
    """Flush ``file`` and replace its last good copy by it (temporary file, fsync, rename, fsync the folder).

    Raises:
        StoreFull: no space left for the copy (the temporary copy is removed; the previous copy stays).
    """
    file.flush()
    path = Path(file.filename).resolve()
    good = good_copy(path)
    temporary = good.with_name(good.name + ".tmp")
    try:
        with open(path, "rb") as source, open(temporary, "wb") as target:
            shutil.copyfileobj(source, target, 2**20)
            target.flush()
            os.fsync(target.fileno())
        os.replace(temporary, good)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        if is_disk_full(err):
            raise StoreFull(disk_full_message(path)) from None
        raise
    _SNAPSHOTS[os.fspath(path)] = time.monotonic()


def check_room(file: h5py.File) -> None:
    """Call before changing ``file``: below :data:`LOW_WATER` bytes free, give back its reserve, flush into that
    room (the file is whole) and raise :class:`StoreFull`, so HDF5 never writes into a full disk.

    HDF5 does not survive a write or flush that fails half-way: the retry or the close can crash the
    process (measured on a filled tmpfs), so the check comes before the change, not after it.
    """
    path = Path(file.filename)
    if Path(f"{path}{RESERVE_SUFFIX}").exists() and _free(path.parent) < LOW_WATER:
        release(path)
        file.flush()
        raise StoreFull(disk_full_message(path))


def flush(file: h5py.File) -> None:
    """Flush ``file`` (:func:`check_room` first); a write that fails for want of space is one :class:`StoreFull` line."""
    check_room(file)
    path = Path(file.filename)
    try:
        file.flush()
    except (OSError, RuntimeError) as err:
        if not is_disk_full(err):
            raise
        raise StoreFull(disk_full_message(path)) from None


def commit_point(file: h5py.File) -> None:
    """:func:`flush` ``file``; if it is a result file whose good copy is older than :data:`SNAPSHOT_EVERY` s, renew the copy."""
    flush(file)
    key = os.fspath(Path(file.filename).resolve())
    last = _SNAPSHOTS.get(key)
    if last is not None and time.monotonic() - last >= SNAPSHOT_EVERY:
        snapshot(file)


def reserve(path: str | os.PathLike) -> None:
    """Set :data:`RESERVE_BYTES` of disk aside beside the result file ``path`` (``<file>.reserve``, real blocks).

    HDF5 needs room to flush its metadata when the file is closed; on a disk that filled up during the
    run, :func:`release` frees this reserve first, so the close succeeds and the file stays whole.
    Raises :class:`StoreFull` when even the reserve does not fit (nothing else was written).
    """
    target = Path(f"{path}{RESERVE_SUFFIX}")
    try:
        with open(target, "wb") as handle:
            handle.write(b"\0" * RESERVE_BYTES)  # written, not truncated: a sparse file would reserve nothing
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:
        target.unlink(missing_ok=True)
        if is_disk_full(err):
            raise StoreFull(f"no room for even {RESERVE_BYTES // 2**20} MiB in {target.parent}; free space or choose "
                            "another --out") from None
        raise


def release(path: str | os.PathLike) -> None:
    """Free the reserve of the result file ``path`` (:func:`reserve`)."""
    Path(f"{path}{RESERVE_SUFFIX}").unlink(missing_ok=True)


def restore_store(path: str | os.PathLike) -> Path:
    """Put the last good copy of ``path`` back in its place; the damaged file is renamed, never deleted.

    Returns:
        Where the damaged file was kept (``<file>.damaged-<UTC time>``), or ``path`` itself when it was missing.

    Raises:
        FileNotFoundError: there is no good copy to restore.
    """
    path = Path(path)
    good = good_copy(path)
    if not good.exists():
        raise FileNotFoundError(f"{path} has no good copy ({good.name}); it cannot be restored: move it away or choose another output file")
    kept = path
    if path.exists():
        kept = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        os.replace(path, kept)
    temporary = path.with_name(path.name + ".restoring")
    shutil.copyfile(good, temporary)
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return kept
