"""Combine the HDF5 files of a sharded sweep into the file one unsharded sweep would have written.

A job array (``runners.relax --shard i/n``) writes one file per shard; each holds the runs of its
shard, and runs that several shards need (the CNN every eFCN starts from) appear in each of them.
:func:`merge_stores` copies every run group into one file; a group present in several shards must be
the same run (datasets equal to ``rtol``, attributes equal apart from timings and paths), which also
checks that the shards trained the shared runs alike. The shards' ``runs`` results must share one
configuration; the merged ``/runs`` is the result the unsharded command would have written (the
shards' tool and configuration, written through ``results.open_result``, so the file's other
results are kept), with the merge's provenance, ``merged_from`` and the shards' summed
``total_seconds``. Paths stored in attributes (relative to their shard's folder) are rewritten
relative to the merged file's folder (:func:`rebase_paths`, also used by every other tool that copies
results between files).

Example:
    >>> import os, tempfile
    >>> from results import CurveWriter, open_result
    >>> folder = tempfile.mkdtemp()
    >>> for shard, run in ((0, "a"), (1, "b")):
    ...     with open_result(os.path.join(folder, f"s{shard}.h5"), "runs", tool="demo", config={}) as result:
    ...         CurveWriter(result.group, f"{run}/history", columns=("epoch",), index="epoch").append(epoch=0)
    >>> paths = [os.path.join(folder, f"s{shard}.h5") for shard in (0, 1)]
    >>> merge_stores(paths, os.path.join(folder, "all.h5"))
    ['a', 'b']
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np

from results.lock import OutputLocked, output_lock
from results.recovery import open_checked
from results.store import read_attrs, read_dataset, write_attrs
from results.writer import open_result

__all__ = ["merge_stores", "rebase_paths", "PATH_ATTRIBUTES"]

# Attributes holding a path relative to their file's folder (a JSON list of such paths for "checkpoints").
PATH_ATTRIBUTES = ("checkpoint", "init", "ckpt_a", "ckpt_b", "checkpoints")

# Attributes that legitimately differ between two shards' copies of one run.
_VOLATILE = {"seconds", "cpu_seconds", "checkpoint", "resumed_from", "peak_memory_bytes"}


def _rebase(value: str, source: Path, out: Path) -> str:
    return os.path.relpath(source.parent.resolve() / value, out.parent.resolve())


def rebase_paths(group: h5py.Group, source: str | os.PathLike, out: str | os.PathLike) -> None:
    """Rewrite the path attributes of ``group`` and its subgroups, copied from file ``source`` into file ``out``.

    Each of :data:`PATH_ATTRIBUTES` is relative to its file's folder; after the copy it must be
    relative to ``out``'s folder instead.

    Example:
        >>> import tempfile
        >>> with h5py.File(os.path.join(tempfile.mkdtemp(), "merged.h5"), "w") as f:
        ...     f.attrs["checkpoint"] = "checkpoints/cnn/final.pt"
        ...     rebase_paths(f["/"], "/exp/relax/results.h5", "/exp/results.h5")
        ...     f.attrs["checkpoint"]
        'relax/checkpoints/cnn/final.pt'
    """
    source, out = Path(source), Path(out)
    members = [group] + [obj for obj in _subgroups(group)]
    for member in members:
        attrs = read_attrs(member)
        for key in PATH_ATTRIBUTES:
            if key not in attrs or not isinstance(attrs[key], str):
                continue
            if key == "checkpoints":
                value = json.dumps([_rebase(path, source, out) for path in json.loads(attrs[key])])
            else:
                value = _rebase(attrs[key], source, out)
            write_attrs(member, {key: value})


def _subgroups(group: h5py.Group) -> list[h5py.Group]:
    found: list[h5py.Group] = []
    group.visititems(lambda _, obj: found.append(obj) if isinstance(obj, h5py.Group) else None)
    return found


def _compare(name: str, kept: h5py.Group, other: h5py.Group, origin: str, rtol: float) -> None:
    """Raise unless ``other`` holds the same run as ``kept`` (datasets to ``rtol``, stable attributes equal)."""
    first = {k: v for k, v in read_attrs(kept).items() if k not in _VOLATILE}
    second = {k: v for k, v in read_attrs(other).items() if k not in _VOLATILE}
    differing = sorted(k for k in set(first) | set(second) if first.get(k) != second.get(k) and not _close(first.get(k), second.get(k), rtol))
    if differing:
        raise ValueError(f"run {name} in {origin} differs from the copy already merged (attributes {', '.join(differing)}); "
                         "the shards trained it differently: merge shards of one sweep with the same options and device")
    for key in sorted(set(kept) | set(other)):
        if key not in kept or key not in other:
            raise ValueError(f"run {name} in {origin} has {key} in only one of its copies; merge shards of one sweep")
        if isinstance(kept[key], h5py.Group):
            _compare(f"{name}/{key}", kept[key], other[key], origin, rtol)
        elif not np.allclose(kept_values := read_dataset(kept[key]), other_values := read_dataset(other[key]), rtol=rtol,
                             atol=0.0, equal_nan=True):
            gap = float(np.nanmax(np.abs(kept_values - other_values)))
            raise ValueError(f"run {name} in {origin} differs from the copy already merged ({key}: max |diff| {gap:.3g}); "
                             "the shards trained it differently (a nondeterministic device?): train shared runs once, "
                             "or merge with a larger rtol")


def _close(a, b, rtol: float) -> bool:
    try:
        return bool(np.allclose(a, b, rtol=rtol, atol=0.0, equal_nan=True))
    except (TypeError, ValueError):
        return False


def merge_stores(paths: Sequence[str | os.PathLike], out: str | os.PathLike, *, overwrite: bool = False, rtol: float = 1e-5,
                 argv: Sequence[str] | None = None) -> list[str]:
    """Merge the run groups of ``paths`` (shards of one sweep) into the result ``/runs`` of ``out``.

    Args:
        paths: the shards' HDF5 files, in shard order (the first copy of a shared run is kept).
        out: the merged file (``results.open_result``: created when missing; its other results are kept).
        overwrite: replace an existing ``/runs`` of ``out``.
        rtol: relative tolerance for the datasets of runs present in several shards.
        argv: the command line recorded with the provenance (default: ``sys.argv``).

    Returns:
        The names of the merged runs, sorted.

    Raises:
        ValueError: no input, an input that is damaged or not a finished shard of the same sweep (other
            configuration, an unfinished run), a shared run whose copies differ, or ``out``'s folder in
            use by another process (its lock, ``results.output_lock``).
        FileExistsError: ``out`` already holds ``/runs`` and ``overwrite`` is false.
    """
    sources = [Path(p) for p in paths]
    if not sources:
        raise ValueError("merge needs at least one shard file, got none")
    out = Path(out)
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise ValueError(f"shard file {missing[0]} does not exist; pass the results.h5 of every shard")
    if out.resolve() in {p.resolve() for p in sources}:
        raise ValueError(f"--out {out} is one of the inputs; write the merged file elsewhere")
    with contextlib.ExitStack() as held:
        try:  # before the output is read: one writer per folder
            held.enter_context(output_lock(out.parent, argv=argv))
        except OutputLocked as err:
            raise ValueError(str(err)) from None
        files = [held.enter_context(_open_shard(p)) for p in sources]
        return _merge(sources, files, out, overwrite=overwrite, rtol=rtol, argv=argv)


@contextlib.contextmanager
def _open_shard(path: Path) -> Iterator[h5py.File]:
    try:
        file = open_checked(path, "r")
    except OSError as err:  # DamagedStore included: one line naming the shard
        raise ValueError(str(err).splitlines()[0]) from None
    with file:
        yield file


def _merge(sources: list[Path], files: list[h5py.File], out: Path, *, overwrite: bool, rtol: float,
           argv: Sequence[str] | None) -> list[str]:
    configs = [f["runs"].attrs.get("config") if "runs" in f else None for f in files]
    for path, config in zip(sources[1:], configs[1:]):
        if config != configs[0]:
            raise ValueError(f"{path} is a shard of another sweep than {sources[0]} (its config differs); "
                             "merge only shards of one command")
    for path, f in zip(sources, files):
        # Diverged and skipped runs are finished too (--resume would not change them); readers leave them out.
        unfinished = [n for n, g in f.get("runs", {}).items() if g.attrs.get("status", "done") not in ("done", "diverged", "skipped")]
        if unfinished:
            raise ValueError(f"{path} is unfinished (run {unfinished[0]} is not done); finish that shard with --resume first")
    if "runs" not in files[0] or "tool" not in files[0]["runs"].attrs:
        raise ValueError(f"{sources[0]} holds no /runs result; pass the results.h5 files of runners.relax --shard")
    if out.is_file() and not overwrite:
        with h5py.File(out, "r") as existing:
            if "runs" in existing:
                raise FileExistsError(f"{out} already holds /runs; pass overwrite=True (--overwrite) to replace them "
                                      "(the file's other results are kept)")
    shard = read_attrs(files[0]["runs"])
    # The merged /runs is the result the unsharded command would have written: same tool and config.
    with open_result(out, "runs", tool=shard["tool"], config=json.loads(shard["config"]), overwrite=overwrite,
                     seed=shard.get("seed"), argv=argv) as result:
        merged = result.file
        write_attrs(result.group, {
            "merged_from": json.dumps([os.path.relpath(p.resolve(), out.parent.resolve()) for p in sources]),
            "total_seconds": sum(float(f["runs"].attrs.get("total_seconds", 0.0)) for f in files if "runs" in f),
        })
        for path, f in zip(sources, files):
            for top, group in f.items():
                if top.startswith("."):  # a shard's unfinished --overwrite (/.pending): not a result
                    continue
                if isinstance(group, h5py.Dataset):
                    if top not in merged:
                        f.copy(group, merged, name=top)
                    continue
                # /runs goes into the result being written (under /.pending until it commits, on --overwrite)
                target = result.group if top == "runs" else merged.require_group(top)
                for name, member in group.items():
                    if name in target:
                        _compare(name, target[name], member, str(path), rtol)
                        continue
                    f.copy(member, target, name=name)
                    rebase_paths(target[name], path, out)
        names = sorted(name for name, member in result.group.items() if isinstance(member, h5py.Group))
    return names
