"""Where an experiment's runs keep their files, below the output folder ``out``.

One layout for ``runners.train``, ``runners.relax`` and ``runners.expandnets``::

    checkpoints/<run>/epoch_<k>.pt    snapshots at the epochs other runs start from
    checkpoints/<run>/final.pt        the trained model (compressed.pt: an ExpandNets run's compact net)
    state/<run>.pt                    per-epoch resume state, deleted when the run is done
    .replaced/<result>/...            an --overwrite's old files, set aside until the new result is committed

The HDF5 file beside them is written by the parent process only (:mod:`runners._engine.pool`).
A run name is one safe part (``results.check_result_name``), and every path built here is checked to
lie inside ``out`` (:func:`inside`), so no name reaches a file outside the output folder. An
``--overwrite`` never deletes the old result's files first: :func:`set_aside` moves them under
``.replaced/``, :func:`drop_set_aside` deletes them once the new result is committed, and
:func:`restore_set_aside` puts them back when the new one failed (or was killed: the next command
in the folder restores them, :func:`runners._engine.experiment.open_experiment`).

Example:
    >>> checkpoint_path("out", "cnn", "epoch_4").as_posix(), state_path("out", "cnn").as_posix()
    ('out/checkpoints/cnn/epoch_4.pt', 'out/state/cnn.pt')
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from results import ResultError, check_result_name

__all__ = ["checkpoint_path", "snapshot_path", "snapshot_of", "final_path", "state_path", "remove_run_files", "holds_run_files",
           "inside", "check_run_name", "set_aside", "restore_set_aside", "drop_set_aside", "set_aside_folder",
           "run_files_bytes"]

REPLACED = ".replaced"


def check_run_name(run: str) -> str:
    """``run`` if it is one safe name part (it names a folder and a file); ``ValueError`` naming the rule otherwise.

    Example:
        >>> check_run_name("efcn_tw4_s0")
        'efcn_tw4_s0'
        >>> check_run_name("../../victim")
        Traceback (most recent call last):
        ...
        ValueError: run name '../../victim' must be one part of letters, digits and _.+=- not starting with '.'; choose another --name
    """
    try:
        if "/" in run:
            raise ResultError(run)
        check_result_name(run)
    except (ResultError, TypeError):
        raise ValueError(f"run name {run!r} must be one part of letters, digits and _.+=- not starting with '.'; "
                         "choose another --name") from None
    return run


def inside(out: str | os.PathLike, path: str | os.PathLike) -> Path:
    """``path`` if, resolved (symbolic links followed), it lies inside the folder ``out``; ``ValueError`` otherwise."""
    root, resolved = Path(out).resolve(), Path(path).resolve()
    if resolved != root and root not in resolved.parents:
        raise ValueError(f"{path} resolves to {resolved}, outside the output folder {root}; choose another --name or --out")
    return Path(path)


def checkpoint_path(out: str | os.PathLike, run: str, label: str) -> Path:
    """``out/checkpoints/<run>/<label>.pt``."""
    return inside(out, Path(out) / "checkpoints" / check_run_name(run) / f"{label}.pt")


def snapshot_path(out: str | os.PathLike, run: str, epoch: int) -> Path:
    """The checkpoint of ``run`` after ``epoch`` epochs on its own clock."""
    return checkpoint_path(out, run, f"epoch_{epoch}")


def final_path(out: str | os.PathLike, run: str) -> Path:
    """The checkpoint of ``run`` at the end of its training."""
    return checkpoint_path(out, run, "final")


def snapshot_of(out: str | os.PathLike, path: str | os.PathLike) -> tuple[str, int] | None:
    """(run, epoch) when ``path`` is :func:`snapshot_path` of a run in ``out`` (symbolic links followed), else ``None``.

    Example:
        >>> snapshot_of("out", "out/checkpoints/cnn/epoch_4.pt"), snapshot_of("out", "elsewhere/epoch_4.pt")
        (('cnn', 4), None)
    """
    resolved = Path(path).resolve()
    match = re.fullmatch(r"epoch_(\d+)\.pt", resolved.name)
    if match is None or resolved.parent.parent != (Path(out) / "checkpoints").resolve():
        return None
    return resolved.parent.name, int(match[1])


def state_path(out: str | os.PathLike, run: str) -> Path:
    """The per-epoch resume state of ``run`` (:func:`runners._engine.loop.train`)."""
    return inside(out, Path(out) / "state" / f"{check_run_name(run)}.pt")


def remove_run_files(out: str | os.PathLike, runs: Iterable[str]) -> None:
    """Delete the checkpoint folders and resume states of ``runs`` (an ``--overwrite`` of their result).

    Only these runs' files go: other results written into ``out`` keep theirs.
    """
    for run in runs:
        shutil.rmtree(checkpoint_path(out, run, "x").parent, ignore_errors=True)
        state_path(out, run).unlink(missing_ok=True)


def holds_run_files(out: str | os.PathLike, runs: Iterable[str]) -> list[str]:
    """The runs among ``runs`` that already have a checkpoint folder or a resume state in ``out``."""
    return [run for run in runs if checkpoint_path(out, run, "x").parent.exists() or state_path(out, run).exists()]


def run_files_bytes(out: str | os.PathLike, runs: Iterable[str]) -> int:
    """Bytes of the checkpoints and states ``runs`` hold in ``out``: what writing them again will need."""
    files = [f for run in runs for f in (*checkpoint_path(out, run, "x").parent.glob("*.pt"), state_path(out, run))]
    return sum(f.stat().st_size for f in files if f.is_file())


def set_aside_folder(out: str | os.PathLike, result: str) -> Path:
    """Where :func:`set_aside` keeps the files of the result ``result`` (a checked result name)."""
    return inside(out, Path(out) / REPLACED / check_result_name(result))


def _pairs(out: Path, aside: Path, runs: Iterable[str]) -> list[tuple[Path, Path]]:
    pairs = []
    for run in runs:
        folder, state = checkpoint_path(out, run, "x").parent, state_path(out, run)
        pairs += [(folder, aside / "checkpoints" / run), (state, aside / "state" / state.name)]
    return pairs


def set_aside(out: str | os.PathLike, result: str, runs: Iterable[str]) -> Path:
    """Move the checkpoints and states of ``runs`` under ``.replaced/<result>`` (renames: nothing is copied or lost)."""
    out = Path(out)
    aside = set_aside_folder(out, result)
    for source, target in _pairs(out, aside, runs):
        if source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
    return aside


def restore_set_aside(out: str | os.PathLike, result: str, runs: Iterable[str] = ()) -> None:
    """Undo :func:`set_aside`: the files ``runs`` wrote since are removed, the set-aside ones put back."""
    out = Path(out)
    aside = set_aside_folder(out, result)
    kept = [p.name for p in (aside / "checkpoints").glob("*")] + [p.stem for p in (aside / "state").glob("*.pt")]
    remove_run_files(out, {*runs, *kept})
    for source, target in _pairs(out, aside, kept):
        if target.exists():
            source.parent.mkdir(parents=True, exist_ok=True)
            os.replace(target, source)
    drop_set_aside(out, result)


def drop_set_aside(out: str | os.PathLike, result: str) -> None:
    """Delete what :func:`set_aside` kept for ``result`` (its replacement is committed)."""
    out = Path(out)
    shutil.rmtree(set_aside_folder(out, result), ignore_errors=True)
    for folder in (set_aside_folder(out, result).parent, out / REPLACED):  # empty parents only
        try:
            folder.rmdir()
        except OSError:
            pass
