"""Which checkpoints ``runners.sharpness`` probes: run directories, ``--ckpt`` lists, seeds, weight twins.

A run directory (the ``--out`` of ``runners.relax``, ``runners.train``, or ``runners.reproduce``'s relax
stage) holds ``checkpoints/<run>/epoch_<k>.pt`` and ``final.pt``; :func:`discover_checkpoints` lists them by
run in epoch order, keeps the runs and seeds ``--runs`` / ``--seeds`` select (matched on the run groups of
``results.h5``: :func:`run_index`), and refuses a run directory whose finished runs lost their ``final.pt``.
:func:`weights_digest` fingerprints a checkpoint's weights, so a checkpoint holding the same weights as an
earlier one (``final.pt`` and the last epoch's snapshot) is probed once.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import h5py
import torch
from torch import nn

from results import run_key
from runners.cli import expand_seeds, fail

__all__ = ["SharpnessCheckpoint", "discover_checkpoints", "run_index", "weights_digest"]


@dataclass(frozen=True)
class SharpnessCheckpoint:
    """One checkpoint to probe, known before any is loaded onto the device."""

    path: Path
    source: str  # location-independent identity: "<run>/<file>" or the --ckpt argument's file name
    digest: str  # of the weights: equal digests are probed once


def weights_digest(model: nn.Module) -> str:
    """A fingerprint of ``model``'s state dict (names and bytes): equal for checkpoints of the same weights."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def discover_checkpoints(args: argparse.Namespace) -> dict[str, list[Path]]:
    """Checkpoints by run: a run directory's snapshots in epoch order then ``final.pt``, or ``--ckpt``.

    ``args.run_dir`` becomes the folder actually probed (see :func:`_run_folder`). SystemExit on bad input.
    """
    if args.ckpt:
        missing = [path for path in args.ckpt if not os.path.isfile(path)]
        if missing:
            raise fail(f"checkpoint {missing[0]} does not exist")
        return {args.name or "checkpoints": [Path(path) for path in args.ckpt]}
    if args.name is not None:
        raise fail("--name labels a --ckpt list; with --run-dir every run keeps its own name (choose runs with --runs)")
    args.run_dir = str(_run_folder(Path(args.run_dir)))
    folder = Path(args.run_dir) / "checkpoints"

    def order(path: Path) -> tuple[int, int]:
        return (1, 0) if path.stem == "final" else (0, int(path.stem.split("_")[-1]) if path.stem.split("_")[-1].isdigit() else 0)

    runs = {run.name: sorted(run.glob("*.pt"), key=order) for run in sorted(folder.iterdir()) if run.is_dir()}
    index = run_index(args.run_dir, runs)
    if args.runs:
        wanted = [name.strip() for name in args.runs.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in runs and name not in {p for p, _ in index.values()}]
        if unknown:
            raise fail(f"--runs names {unknown} not found in {folder}; available: {', '.join(sorted({p for p, _ in index.values()}))}")
        runs = {name: paths for name, paths in runs.items() if name in wanted or index[name][0] in wanted}
    if args.seeds is not None:
        seeds = expand_seeds(args.seeds, args.seed)
        runs = {name: paths for name, paths in runs.items() if index[name][1] in seeds}
        if not runs:
            found = sorted({seed for _, seed in index.values() if seed is not None})
            raise fail(f"--seeds {','.join(map(str, seeds))} selects no run in {folder}; its runs have seeds {found or 'unknown'}")
    lost = _lost_checkpoints(args.run_dir, runs if args.runs or args.seeds is not None else None)
    if lost:
        raise fail(f"checkpoints of finished runs are missing: {', '.join(map(str, lost))}; restore them "
                   "(runners.relax/train --resume retrains a run whose final.pt is gone) or leave those runs out with --runs")
    runs = {name: paths for name, paths in runs.items() if paths}
    if not runs:
        raise fail(f"no .pt checkpoints under {folder}")
    return runs


def _run_folder(given: Path) -> Path:
    """The folder whose ``checkpoints/`` are probed: ``given``, or the one sub-folder of ``given`` that has them.

    ``runners.reproduce --out DIR`` keeps the protocol's runs in ``DIR/relax`` (and ExpandNets' in
    ``DIR/expandnets``): given ``DIR``, its ``relax`` folder is taken, and the command says so.
    """
    if (given / "checkpoints").is_dir():
        return given
    found = sorted(sub for sub in given.iterdir() if (sub / "checkpoints").is_dir()) if given.is_dir() else []
    chosen = [sub for sub in found if sub.name == "relax"] or found
    if len(chosen) != 1:
        within = f"; its sub-folders {', '.join(sub.name for sub in found)} have some: pass one of them" if found else ""
        raise fail(f"{given} has no checkpoints/ folder{within}; pass the --out folder of runners.relax, runners.train or "
                   "runners.reproduce, or use --ckpt")
    print(f"--run-dir {given}: probing the runs of {chosen[0]} (its checkpoints/ and results.h5)")
    return chosen[0]


def _lost_checkpoints(run_dir: str | os.PathLike, names: Iterable[str] | None) -> list[Path]:
    """The ``final.pt`` files that ``run_dir/results.h5`` records for its done runs (of ``names``; ``None``: all) and that are gone.

    Without this a deleted ``final.pt`` silently drops the run's last row from the probes.
    """
    try:
        with h5py.File(Path(run_dir) / "results.h5", "r") as store:
            runs = store.get("runs")
            recorded = {name: group.attrs.get("checkpoint") for name, group in runs.items()
                        if isinstance(group, h5py.Group) and group.attrs.get("status") == "done"} if isinstance(runs, h5py.Group) else {}
    except OSError:  # a run dir of checkpoints only: nothing recorded to miss
        return []
    wanted = recorded if names is None else {name: recorded[name] for name in names if name in recorded}
    return [Path(run_dir) / path for _, path in sorted(wanted.items()) if path and not (Path(run_dir) / path).is_file()]


def run_index(run_dir: str | os.PathLike, names: Iterable[str]) -> dict[str, tuple[str, int | None]]:
    """``(protocol_run, seed)`` of every run folder, from the run groups of ``run_dir/results.h5``.

    A run the file does not describe (no file, an older file) is its own protocol run; its seed is the
    relax result's ``seed`` when the file has one, else ``None``.
    """
    described: dict[str, dict] = {}
    default_seed = None
    try:
        with h5py.File(Path(run_dir) / "results.h5", "r") as store:
            runs = store.get("runs")
            if isinstance(runs, h5py.Group):
                default_seed = int(runs.attrs["seed"]) if "seed" in runs.attrs else None
                described = {name: dict(group.attrs) for name, group in runs.items() if isinstance(group, h5py.Group)}
    except OSError:  # no results.h5 (a run dir of checkpoints only) or one being written: fall back to names
        pass
    return {name: run_key(name, described.get(name, {}), default_seed) for name in names}
