"""Durable files: atomic, fsynced ``torch.save`` and the SHA-256 that checkpoints and state files carry.

:func:`atomic_save` writes a temporary file in the destination's folder, flushes and ``fsync``\\ s it,
renames it over the destination (``os.replace`` is atomic on POSIX) and ``fsync``\\ s the folder, so
after a crash, a kill or a full disk the destination holds either the previous file or the new one,
whole. A write error removes the temporary file and raises :class:`DurableWriteError` with one line
(``no space left on device while writing X; N bytes free; the previous file is intact``).

:func:`payload_sha256` is the checksum stored under ``"sha256"`` in checkpoints and training state
files: SHA-256 over every entry of the payload but ``"sha256"`` itself, walking dicts in key order,
tensors as name, dtype, shape and raw bytes, plain values by type and ``repr`` (exact for floats).
A flipped bit in a tensor or a number changes it.

Example:
    >>> import tempfile, os
    >>> payload = {"w": torch.ones(2), "epoch": 3}
    >>> path = atomic_save({**payload, "sha256": payload_sha256(payload)}, os.path.join(tempfile.mkdtemp(), "s.pt"))
    >>> again = torch.load(path, weights_only=True)
    >>> again["sha256"] == payload_sha256(again)
    True
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_save", "DurableWriteError", "payload_sha256", "SHA256_KEY"]

SHA256_KEY = "sha256"

# Errors after which the free space is the useful number to report.
_SPACE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class DurableWriteError(OSError):
    """A file could not be written; the destination was left as it was (one-line message, ``errno`` kept)."""

    def __str__(self) -> str:
        return str(self.strerror)


class _Sink(io.FileIO):
    """A file that remembers the ``OSError`` of a failed write: ``torch.save`` turns it into a RuntimeError."""

    error: OSError | None = None

    def write(self, data) -> int:
        try:
            return super().write(data)
        except OSError as err:
            self.error = err
            raise


def _free_bytes(folder: Path) -> str:
    try:
        return f"{shutil.disk_usage(folder).free:,}"
    except OSError:
        return "unknown"


def _write_error(err: OSError, path: Path, existed: bool) -> DurableWriteError:
    reason = (err.strerror or str(err)).lower()
    free = f"; {_free_bytes(path.parent)} bytes free" if err.errno in _SPACE_ERRORS else ""
    kept = "the previous file is intact" if existed else "nothing was written"
    return DurableWriteError(err.errno, f"{reason} while writing {path}{free}; {kept}")


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable: the folder's entry, not only the file's bytes."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError as err:
        # Some file systems cannot fsync a folder; the file's own fsync stands.
        if err.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(descriptor)


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` that never leaves a half-written or missing file behind.

    Args:
        obj: anything ``torch.save`` accepts (keep it to tensors and plain values so that
            ``torch.load(..., weights_only=True)`` reads it back).
        path: destination; its folder is created. An existing file is replaced only once the new
            one is complete and on disk.

    Returns:
        The path written.

    Raises:
        DurableWriteError: an ``OSError`` (full disk, no permission, ...) with a one-line message;
            the temporary file is removed and ``path`` is unchanged.
    """
    path = Path(path)
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(descriptor)
    except OSError as err:
        raise _write_error(err, path, existed) from None
    sink = None
    try:
        with _Sink(temp, "wb") as sink:
            torch.save(obj, sink)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(temp, path)
        _fsync_folder(path.parent)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        cause = sink.error if sink is not None and sink.error is not None else err
        if isinstance(cause, OSError):
            raise _write_error(cause, path, existed) from None
        raise
    return path


def _update(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        # Raw bytes through a uint8 view: exact for every dtype (bfloat16 and bool included).
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    elif isinstance(value, Mapping):
        digest.update(f"D{len(value)}".encode())
        for key in sorted(value, key=lambda k: (type(k).__name__, repr(k))):
            digest.update(f"K{type(key).__name__}{key!r}".encode())
            _update(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{type(value).__name__}{len(value)}".encode())
        for item in value:
            _update(digest, item)
    else:
        digest.update(f"V{type(value).__name__}{value!r}".encode())


def payload_sha256(payload: Mapping[str, Any]) -> str:
    """Hex SHA-256 of a checkpoint or state payload: every entry but ``"sha256"`` (see the module docstring)."""
    digest = hashlib.sha256()
    _update(digest, {key: value for key, value in payload.items() if key != SHA256_KEY})
    return digest.hexdigest()
