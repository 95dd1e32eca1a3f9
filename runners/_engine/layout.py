"""Where an experiment's runs keep their files, below the output folder ``out``.

One layout for ``runners.train``, ``runners.relax`` and ``runners.expandnets``::

    checkpoints/<run>/epoch_<k>.pt    snapshots at the epochs other runs start from
    checkpoints/<run>/final.pt        the trained model (compressed.pt: an ExpandNets run's compact net)
    state/<run>.pt                    per-epoch resume state, deleted when the run is done

The HDF5 file beside them is written by the parent process only (:mod:`runners._engine.pool`).

Example:
    >>> checkpoint_path("out", "cnn", "epoch_4").as_posix(), state_path("out", "cnn").as_posix()
    ('out/checkpoints/cnn/epoch_4.pt', 'out/state/cnn.pt')
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

__all__ = ["checkpoint_path", "snapshot_path", "final_path", "state_path", "remove_run_files", "holds_run_files"]


def checkpoint_path(out: str | os.PathLike, run: str, label: str) -> Path:
    """``out/checkpoints/<run>/<label>.pt``."""
    return Path(out) / "checkpoints" / run / f"{label}.pt"


def snapshot_path(out: str | os.PathLike, run: str, epoch: int) -> Path:
    """The checkpoint of ``run`` after ``epoch`` epochs on its own clock."""
    return checkpoint_path(out, run, f"epoch_{epoch}")


def final_path(out: str | os.PathLike, run: str) -> Path:
    """The checkpoint of ``run`` at the end of its training."""
    return checkpoint_path(out, run, "final")


def state_path(out: str | os.PathLike, run: str) -> Path:
    """The per-epoch resume state of ``run`` (:func:`runners._engine.loop.train`)."""
    return Path(out) / "state" / f"{run}.pt"


def remove_run_files(out: str | os.PathLike, runs: Iterable[str]) -> None:
    """Delete the checkpoint folders and resume states of ``runs`` (an ``--overwrite`` of their result).

    Only these runs' files go: other results written into ``out`` keep theirs.
    """
    for run in runs:
        shutil.rmtree(Path(out) / "checkpoints" / run, ignore_errors=True)
        state_path(out, run).unlink(missing_ok=True)


def holds_run_files(out: str | os.PathLike, runs: Iterable[str]) -> list[str]:
    """The runs among ``runs`` that already have a checkpoint folder or a resume state in ``out``."""
    return [run for run in runs if (Path(out) / "checkpoints" / run).exists() or state_path(out, run).exists()]
