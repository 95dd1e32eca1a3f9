"""HDF5 result store: one file per experiment, curves as groups of 1-D datasets sharing an index.

The schema is documented in ``results/README.md``. Three rules make a result file trustworthy:

* **never overwritten by accident**: :func:`open_store` refuses an existing file unless told to
  ``overwrite`` it (replace) or ``resume`` it (append);
* **append-and-flush**: :class:`CurveWriter` writes one point (one row across all of a curve's
  datasets) at a time and flushes the file, so a killed run keeps every finished point (and renews
  the file's last good copy now and then, :func:`results.recovery.commit_point`);
* **checked reads**: curve datasets carry the Fletcher-32 checksum filter, so a flipped bit fails the
  read; :func:`read_dataset` (behind :func:`read_curve`) turns that failure into one line naming the
  file and dataset, and refuses a dataset that claims more data than the file stores (a damaged or
  crafted header would otherwise make the reader allocate gigabytes);
* **provenance**: :func:`provenance` gathers the command line, package versions, git commit, seed and
  time, written as attributes by :func:`write_attrs`.

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "demo.h5")
    >>> with open_store(path) as store:
    ...     curve = CurveWriter(store, "runs/cnn/history", columns=("epoch", "test_acc"), index="epoch")
    ...     curve.append(epoch=0, test_acc=0.1)
    ...     curve.append(epoch=1, test_acc=0.8)
    ...     len(curve), read_curve(store["runs/cnn/history"])["test_acc"].tolist()
    (2, [0.1, 0.8])
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from results._checks import check_columns, check_length, check_row
from results.recovery import check_room, commit_point, flush

__all__ = ["open_store", "CurveWriter", "read_curve", "read_dataset", "write_array", "UnreadableData", "write_attrs", "read_attrs",
           "provenance", "MAX_READ_BYTES"]

# The most one dataset read may allocate: far above any curve or weight panel this toolkit writes.
MAX_READ_BYTES = 2**30
# How much more than it stores an uncompressed dataset may claim (a chunk left unwritten by a kill).
_UNSTORED_SLACK = 2**20


class UnreadableData(ValueError):
    """A dataset fails its checksum, cannot be read, or claims more data than its file stores (one line)."""


def open_store(path: str | os.PathLike, *, overwrite: bool = False, resume: bool = False) -> h5py.File:
    """Open an HDF5 result file for writing.

    Args:
        path: the ``.h5`` file; its folder is created.
        overwrite: replace an existing file (its contents are lost).
        resume: append to an existing file (a missing one is created), to continue a killed run.

    Returns:
        An open ``h5py.File`` (use it as a context manager).

    Raises:
        FileExistsError: the file exists and neither ``overwrite`` nor ``resume`` was given.
        ValueError: both ``overwrite`` and ``resume`` were given.
    """
    if overwrite and resume:
        raise ValueError("overwrite=True and resume=True contradict each other; choose one (--overwrite or --resume)")
    path = Path(path)
    if path.exists() and not (overwrite or resume):
        raise FileExistsError(
            f"results file {path} already exists; pass overwrite=True (--overwrite) to replace it "
            f"or resume=True (--resume) to continue it"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    return h5py.File(path, "a" if resume else "w")


class CurveWriter:
    """Append-and-flush writer for a curve: a group of 1-D float64 datasets sharing one index.

    Opening an existing group (a resumed run) continues it; its columns must match. Every
    :meth:`append` grows every dataset by one point and flushes the file.

    Args:
        parent: an open file or group.
        name: path of the curve's group below ``parent`` (created with its parents when absent).
        columns: dataset names, the index included.
        index: the column that indexes the curve (``epoch``, ``alpha``, ...), stored as the group's
            ``index`` attribute.
    """

    def __init__(self, parent: h5py.Group, name: str, *, columns: Sequence[str], index: str) -> None:
        self.columns = check_columns(columns, index)
        self.index = index
        self.group = parent.require_group(name)
        existing = set(self.group.keys())
        if existing and existing != set(self.columns):
            raise ValueError(
                f"curve {self.group.name} holds columns {sorted(existing)}, not the requested "
                f"{sorted(self.columns)}; write to another group or start over with overwrite=True"
            )
        for column in self.columns:
            if column not in self.group:
                # Fletcher-32: a flipped bit in a stored point fails the read instead of drawing another number.
                self.group.create_dataset(column, shape=(0,), maxshape=(None,), dtype="f8", chunks=(256,), fletcher32=True)
        self.group.attrs["index"] = index
        lengths = {self.group[c].shape[0] for c in self.columns}
        if len(lengths) != 1:
            # A kill between two dataset resizes leaves ragged columns; keep the common prefix.
            self.truncate(min(lengths))

    def __len__(self) -> int:
        return int(self.group[self.index].shape[0])

    def append(self, **row: float) -> None:
        """Add one point: a value for every column (``float('nan')`` where none applies)."""
        values = check_row(row, self.columns)
        check_room(self.group.file)
        n = len(self)
        for column, value in values.items():
            dataset = self.group[column]
            dataset.resize((n + 1,))
            dataset[n] = value
        commit_point(self.group.file)

    def append_at(self, position: int, **row: float) -> None:
        """Make ``row`` point number ``position``: later points are dropped, then it is appended.

        Replaying a resumed run's points through this is idempotent: a point written before a kill
        and written again after the resume appears once.
        """
        self.truncate(check_length(position, len(self)))
        self.append(**row)

    def truncate(self, length: int) -> None:
        """Keep the first ``length`` points (resuming from a checkpoint older than the curve)."""
        current = max(self.group[c].shape[0] for c in self.columns)
        check_length(length, current)
        for column in self.columns:
            self.group[column].resize((min(length, self.group[column].shape[0]),))
        self.group.file.flush()

    def read(self) -> dict[str, np.ndarray]:
        """The curve so far, one array per column."""
        return read_curve(self.group)


def write_array(group: h5py.Group, name: str, data: Any, **options: Any) -> h5py.Dataset:
    """Write ``data`` as the dataset ``name`` of ``group`` (replacing one there), with the Fletcher-32 checksum.

    ``options`` go to ``create_dataset`` (``maxshape`` for an array that grows row by row). A scalar
    or empty array cannot be chunked, so it has no checksum (there is no payload to protect).
    """
    if name in group:
        del group[name]
    array = np.asarray(data)
    checked = array.ndim > 0 and (array.size > 0 or "maxshape" in options)
    return group.create_dataset(name, data=array, fletcher32=checked, **options)


def read_curve(group: h5py.Group) -> dict[str, np.ndarray]:
    """Every 1-D dataset of a curve group, as numpy arrays keyed by column name (each read by :func:`read_dataset`)."""
    return {name: read_dataset(group[name]) for name in group if isinstance(group[name], h5py.Dataset)}


def read_dataset(dataset: h5py.Dataset, *, max_bytes: int = MAX_READ_BYTES) -> np.ndarray:
    """The whole of ``dataset``, after checking that it holds what it claims, with read errors as one line.

    A dataset's header gives its shape; a damaged or crafted one can claim 3e8 rows in a 100 KB file,
    and reading it would allocate gigabytes of fill values. So an uncompressed dataset may claim at
    most what its file stores for it (plus a chunk's slack), a compressed one a thousand times that,
    and none more than ``max_bytes``.

    Raises:
        UnreadableData: the claim fails those bounds, or the read fails (a Fletcher-32 mismatch: a
            flipped bit; a damaged chunk index).
    """
    where = f"{dataset.file.filename}: dataset {dataset.name}"
    claimed = int(dataset.size) * int(dataset.dtype.itemsize)
    stored = int(dataset.id.get_storage_size())
    allowed = min(max_bytes, (1000 * stored if dataset.compression else stored) + _UNSTORED_SLACK)
    if claimed > allowed:
        raise UnreadableData(f"{where} claims shape {dataset.shape} ({claimed / 2**20:.4g} MiB) but the file stores "
                             f"{stored} bytes of it; the file is damaged or crafted: restore it (python -m runners.repair FILE, "
                             "if it has a good copy) or re-create it")
    try:
        return dataset[()]
    except (OSError, RuntimeError, ValueError) as err:
        raise UnreadableData(f"{where} cannot be read ({str(err).splitlines()[0][:160] if str(err) else type(err).__name__}: "
                             "a checksum mismatch means a flipped bit); the file is damaged: restore it (python -m "
                             "runners.repair FILE, if it has a good copy) or re-create it") from None


def write_attrs(obj: h5py.HLObject, values: Mapping[str, Any]) -> None:
    """Write attributes with HDF5-friendly types.

    Strings, numbers and booleans are stored as they are; lists/tuples of numbers as arrays;
    ``None`` removes the attribute (absent means "does not apply"); dicts and mixed lists are
    stored as JSON text (``json.loads`` reads them back).
    """
    check_room(obj.file)
    for key, value in values.items():
        if value is None:
            if key in obj.attrs:
                del obj.attrs[key]
            continue
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            value = np.asarray(value)
        elif isinstance(value, (dict, list, tuple)):
            value = json.dumps(value, sort_keys=True)
        elif isinstance(value, os.PathLike):
            value = os.fspath(value)
        elif isinstance(value, str):
            value = str(value)  # str subclasses (torch's TorchVersion) confuse h5py's type mapping
        obj.attrs[key] = value
    flush(obj.file)


def read_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    """Attributes as Python values (numpy scalars become ``int``/``float``/``bool``, arrays lists)."""
    out: dict[str, Any] = {}
    for key, value in obj.attrs.items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, bytes):
            value = value.decode()
        out[key] = value
    return out


def _git_commit() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def provenance(*, seed: int | None = None, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Where a result comes from: command line, package versions, git commit, seed, time (UTC).

    Keys: ``command``, ``python``, ``torch``, ``numpy``, ``h5py``, ``platform``, ``git_commit``,
    ``seed`` (absent when ``None``), ``created_utc``.
    """
    import torch  # deferred: the store itself does not need torch

    argv = list(sys.argv if argv is None else argv)
    return {
        "command": " ".join(argv),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "platform": platform.platform(),
        "git_commit": _git_commit(),
        "seed": seed,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
