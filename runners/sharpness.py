"""Curvature along training: Hessian top-k eigenvalues, trace, basin width per checkpoint, into HDF5.

    python -m runners.sharpness --run-dir runs/relax --out runs/relax/sharpness.h5 --plot
    python -m runners.sharpness --ckpt a.pt b.pt --out sharpness.h5 --k 3 --subspace offlocal

Checkpoints come from a run directory (``checkpoints/<run>/epoch_<k>.pt`` and ``final.pt``, as
``runners.relax`` and ``runners.train`` write them) or from ``--ckpt``. Every run becomes the group
``/sharpness/<run>/``: the curve ``curve`` (index ``row``; ``epoch``, ``t_w``, ``final``, ``seed``, then the measures
``train_loss``, ``trace``, ``trace_se``, ``basin_width``, ``basin_width_std``, ``basin_censored``, ``basin_rise``,
``eps_sharpness``, ``lanczos_iterations``, ``lanczos_converged``, each also as ``<measure>_efcn``, and
``seconds``), the ``(n, k)`` datasets ``top_eigs`` and ``top_eigs_efcn`` (descending) and, on request,
``density_<row>/`` (SLQ ``grid``, ``density``) and ``surface_<row>/`` (``axis``, ``loss``, ``accuracy``).
Rows are flushed one checkpoint at a time; ``--resume`` continues a killed run.

Seeds. A run directory of ``runners.relax --seeds`` holds every seed's runs (``cnn_s0``, ``cnn_s1``, ...).
``--runs cnn,efcn_tw4`` names protocol runs: it selects those runs of every seed, matched on the
``protocol_run`` and ``seed`` attributes of ``--run-dir/results.h5`` (its names when the file lacks
them); ``--seeds`` (a count from ``--seed``, or a list) keeps only those seeds (default: every seed).
Every group carries ``seed`` and ``protocol_run``, every row its ``seed``.

Coordinates (``--coordinates``). A CNN's Hessian in its own, weight-shared coordinates is not comparable
with an eFCN's: the same function has a different Hessian in the eFCN's coordinates
(``H_cnn = J^T H_efcn J``, ``J`` the embedding's Jacobian).
The plain columns hold the checkpoint's **own** coordinates; the ``_efcn`` columns hold the **eFCN's**
coordinates: a CNN or eLCN checkpoint is embedded (:func:`embeddings.to_efcn`, the same function) and
probed there, an eFCN or FCN checkpoint already lives there (its ``_efcn`` columns repeat its own).
``own`` leaves the ``_efcn`` columns of CNN / eLCN rows NaN, ``efcn`` leaves their own columns NaN,
``both`` (the default) fills both. Density and surface arrays are in the first probed coordinates
(own, unless ``--coordinates efcn``). The group's attribute ``coordinates`` records the choice.

Basin widths. ``basin_censored`` is the fraction of rays along which the loss never rose enough within
``--basin-max``: those rays count ``--basin-max``, so ``basin_width`` is then a lower bound (figures
draw it as censored, never as a width). ``basin_rise`` is the loss rise that marked the edge:
``--basin-threshold`` itself (``--basin-mode absolute``) or that fraction of the checkpoint's own loss
(``relative``).

Checkpoints are loaded one at a time (an eFCN series of AlexNet size never sits on the device at
once), and a checkpoint holding the same weights as an earlier one (``final.pt`` and the last
epoch's snapshot) is probed once: its row copies the earlier row's numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from collections.abc import Iterable
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from embeddings import MemoryBudgetError, embed_parameters, local_masks, model_space, to_cnn, to_efcn
from landscape import (
    HessianOperator,
    NonFiniteError,
    ParameterSubspace,
    Progress,
    check_finite_model,
    basin_width,
    epsilon_sharpness,
    hutch_plus_plus,
    hutchinson,
    lanczos,
    loss_surface,
    parameter_subspace,
    slq,
)
from results import (CheckpointError, CurveWriter, ResultError, check_result_name, load_checkpoint, open_result, read_attrs, run_key, write_array,
                     write_attrs)
from runners._engine import check_model, launched, load_data, on_device, peak_memory_bytes, reset_peak_memory, resolve_loss
from runners.cli import (
    add_common_arguments, add_loss_argument, add_model_arguments, add_seeds_argument, expand_seeds, fail, model_from_args, progress_disabled,
    resolve_device,
)

MEASURES = (
    "train_loss", "trace", "trace_se", "basin_width", "basin_width_std", "basin_censored", "basin_rise", "eps_sharpness",
    "lanczos_iterations", "lanczos_converged",
)
EFCN_SUFFIX = "_efcn"  # the columns (and top_eigs dataset) measured in the eFCN's coordinates
COLUMNS = ("row", "epoch", "t_w", "final", "seed", *MEASURES, *(m + EFCN_SUFFIX for m in MEASURES), "seconds")
SUBSPACES = ("full", "cnn", "local", "offlocal")
COORDINATES = ("own", "efcn", "both")
_DENSE_SPACES = ("efcn", "fcn")  # checkpoints whose own coordinates are the eFCN's


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runners.sharpness", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common_arguments(parser)
    add_loss_argument(parser)
    add_model_arguments(parser, default_help="the one the checkpoints record; needed for plain state dicts")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir", help="--out folder of runners.relax, runners.train or runners.reproduce (its relax stage): "
                                           "every checkpoints/<run>/*.pt is probed")
    source.add_argument("--ckpt", nargs="+", help="checkpoint files to probe, in this order")
    parser.add_argument("--name", default=None,
                        help="with --ckpt: the name of their row group /sharpness/<name> in --out (default: checkpoints)%(default).0s")
    parser.add_argument("--runs", default=None,
                        help="with --run-dir: comma-separated protocol runs (every seed's) or run names to keep (default: all)%(default).0s")
    add_seeds_argument(parser)
    parser.add_argument("--out", default="sharpness.h5", help="HDF5 result file")
    parser.add_argument("--k", type=int, default=5, help="top-k Hessian eigenvalues (Lanczos)")
    parser.add_argument("--tol", type=float, default=1e-3, help="relative Ritz residual at which Lanczos stops")
    parser.add_argument("--max-basis-vectors", type=int, default=None,
                        help="most Lanczos vectors stored at once; fewer restart more often (default max(20, 3k); "
                             "a run that cannot fit is refused before it starts, naming a value that fits)%(default).0s")
    parser.add_argument("--trace-probes", type=int, default=30, help="operator products of the trace estimate")
    parser.add_argument("--trace-method", choices=("hutchinson", "hutch++"), default="hutch++", help="trace estimator")
    parser.add_argument("--basin-directions", type=int, default=5, help="filter-normalised directions (each measured both ways)")
    parser.add_argument("--basin-threshold", type=float, default=0.1, help="loss rise marking the basin's edge")
    parser.add_argument("--basin-mode", choices=("absolute", "relative"), default="absolute",
                        help="threshold in loss units or as a fraction of the checkpoint's loss")
    parser.add_argument("--basin-max", type=float, default=1.0, help="longest distance probed (units of filter norms)")
    parser.add_argument("--epsilon", type=float, default=0.0, help="box size of Keskar's epsilon-sharpness (0: skip; Keskar: 1e-3)")
    parser.add_argument("--subspace", choices=SUBSPACES, default="full",
                        help="directions probed in embedded models: all, the CNN subspace, the local or the off-local blocks "
                             "(CNN checkpoints are always probed in full)")
    parser.add_argument("--coordinates", choices=COORDINATES, default="both",
                        help="where CNN / eLCN checkpoints are probed: their own weight-shared coordinates, the eFCN's "
                             "(embedded: the same function), or both (eFCN / FCN checkpoints are always in their own)")
    parser.add_argument("--density", action="store_true", help="also store the SLQ spectral density of every checkpoint")
    parser.add_argument("--surface", choices=("none", "1d", "2d"), default="none", help="also store a filter-normalised loss surface")
    parser.add_argument("--surface-points", type=int, default=21, help="grid points per axis of --surface")
    parser.add_argument("--batch-size", type=int, default=1000, help="batch of the full-data averages (no effect on the numbers)")
    parser.add_argument("--n-train", type=int, default=None, help="keep only the first N training examples (quick runs)")
    parser.add_argument("--overwrite", action="store_true", help="replace the sharpness result of --out (other results are kept)")
    parser.add_argument("--resume", action="store_true", help="continue the rows already in --out")
    parser.add_argument("--plot", action="store_true", help="also draw sharpness vs epoch (and the relax gain) next to --out")
    return parser


def _discover(args: argparse.Namespace) -> dict[str, list[Path]]:
    """Checkpoints by run: a run directory's snapshots in epoch order then ``final.pt``, or ``--ckpt``."""
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


def _check_args(args: argparse.Namespace) -> None:
    for flag, value, low in (("--k", args.k, 1), ("--trace-probes", args.trace_probes, 3), ("--basin-directions", args.basin_directions, 1),
                             ("--batch-size", args.batch_size, 1), ("--surface-points", args.surface_points, 2),
                             ("--max-basis-vectors", args.k + 2 if args.max_basis_vectors is None else args.max_basis_vectors, args.k + 2)):
        if value < low:
            raise fail(f"{flag} must be >= {low}, got {value}")
    for flag, value in (("--tol", args.tol), ("--basin-threshold", args.basin_threshold), ("--basin-max", args.basin_max)):
        if not (math.isfinite(value) and value > 0):
            raise fail(f"{flag} must be a positive number, got {value}")
    if not (math.isfinite(args.epsilon) and args.epsilon >= 0):
        raise fail(f"--epsilon must be >= 0 (0 skips epsilon-sharpness), got {args.epsilon}")
    if args.overwrite and args.resume:
        raise fail("--overwrite and --resume contradict each other; choose one")
    if args.name is not None:
        try:  # one group below /sharpness, named like every result
            check_result_name(f"sharpness/{args.name}")
            if "/" in args.name:
                raise ResultError(f"--name {args.name!r} contains '/'; a sharpness name is one part of letters, digits and _.+=-")
        except ResultError as err:
            raise fail(str(err)) from None


def _subspace(model: nn.Module, choice: str, path: Path) -> ParameterSubspace | None:
    """The probed directions of one checkpoint (None: all parameters)."""
    if choice == "full" or model_space(model) == "cnn":
        return None
    if choice == "cnn":
        cnn = to_cnn(model)
        return parameter_subspace(model, linear_map=lambda c: embed_parameters(model, c), coordinates=dict(cnn.named_parameters()))
    masks = local_masks(model)
    if not masks:
        raise fail(f"--subspace {choice} needs dense embedded layers (an eFCN or FCN); {path} holds a {model_space(model)}")
    return parameter_subspace(model, masks=masks if choice == "local" else {name: ~mask for name, mask in masks.items()})


@dataclass(frozen=True)
class _Checkpoint:
    """One checkpoint to probe, known before any is loaded onto the device."""

    path: Path
    source: str  # location-independent identity: "<run>/<file>" or the --ckpt argument's file name
    digest: str  # of the weights: equal digests are probed once


def _weights_digest(model: nn.Module) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _load(path: Path, device: torch.device | str, args: argparse.Namespace) -> tuple[nn.Module, dict]:
    try:
        # --model builds what a plain state dict is loaded into; our checkpoints rebuild themselves.
        return load_checkpoint(path, model=model_from_args(args), map_location=device)
    except CheckpointError as err:
        raise fail(str(err).splitlines()[0]) from None


def _prepare(args: argparse.Namespace):
    """Everything that can fail on bad input, before the result file is touched.

    Every checkpoint is read once on the CPU, one at a time, to check it (and its --subspace) and
    to fingerprint its weights; the probes load it again, one at a time, onto the device.
    """
    _check_args(args)
    try:
        loss_fn = resolve_loss(args.loss)
    except ValueError as err:
        raise fail(str(err)) from None
    runs: dict[str, list[_Checkpoint]] = {}
    data = None
    for run, paths in _discover(args).items():
        runs[run] = []
        for path in paths:
            model, _ = _load(path, "cpu", args)
            if model.input_shape is None and args.data == "fake":  # a factory that takes none (torchvision's), no --input-shape
                raise fail(f"--data fake needs the input shape, which {path} (model {model.arch}) does not record; "
                           "pass --input-shape, e.g. 3,32,32")
            _subspace(model, args.subspace, path)
            try:  # a diverged checkpoint is refused before the result file is touched
                check_finite_model(model)
            except NonFiniteError as err:
                raise fail(f"{path}: {err}") from None
            if data is None:  # the first checkpoint sizes the fake data
                data = _data(args, model.input_shape and tuple(model.input_shape),
                             int(getattr(model, "arch_kwargs", {}).get("num_classes", 10)))
            try:  # every checkpoint must fit the data: a mismatch is one line now, not a traceback mid-probe
                check_model(data, model, what=f"checkpoint {path}", loss_fn=loss_fn)
            except ValueError as err:
                raise fail(str(err)) from None
            source = path.name if args.ckpt else f"{run}/{path.name}"
            runs[run].append(_Checkpoint(path, source, _weights_digest(model)))
            del model  # one at a time
    return runs, data


def _data(args: argparse.Namespace, input_shape: tuple[int, ...] | None, num_classes: int):
    """The probed training set (``--data``; the test split is not probed, one example is kept).

    ``input_shape`` ``None``: a checkpoint that records none, probed on the data's inputs as they are.
    """
    try:
        data = load_data(args.data, root=args.data_root, download=args.download, seed=args.seed, n_train=args.n_train,
                         n_test=1, num_classes=num_classes, **({"input_shape": input_shape} if input_shape else {}))
    except (ValueError, FileNotFoundError) as err:
        raise fail(str(err).splitlines()[0]) from None
    if input_shape is not None and tuple(data.input_shape) != input_shape:
        raise fail(f"--data {args.data} has inputs of shape {tuple(data.input_shape)} but the checkpoints expect "
                   f"{input_shape}; pass the data set the models were trained on")
    return data


def _measure(args, model: nn.Module, subspace: ParameterSubspace | None, batches) -> tuple[np.ndarray, dict[str, float]]:
    """Top-k eigenvalues and the :data:`MEASURES` of one model in one set of coordinates."""
    loss_fn = resolve_loss(args.loss)
    operator = HessianOperator(model, loss_fn, batches, subspace=subspace)
    k = min(args.k, operator.size)
    try:
        eigen = lanczos(operator, k=k, tol=args.tol, seed=args.seed, max_basis_vectors=args.max_basis_vectors)
    except MemoryBudgetError as err:
        raise fail(str(err)) from None
    if args.trace_method == "hutch++":
        trace = hutch_plus_plus(operator, num_matvecs=args.trace_probes, seed=args.seed)
    else:
        trace = hutchinson(operator, num_matvecs=args.trace_probes, seed=args.seed)
    basin = basin_width(model, loss_fn, batches, threshold=args.basin_threshold, mode=args.basin_mode,
                        num_directions=args.basin_directions, max_distance=args.basin_max, subspace=subspace, seed=args.seed)
    sharp = math.nan
    if args.epsilon > 0:
        sharp = epsilon_sharpness(model, loss_fn, batches, epsilon=args.epsilon, subspace=subspace, seed=args.seed).sharpness
    eigs = np.full(args.k, np.nan)
    eigs[:k] = eigen.eigenvalues.numpy()
    return eigs, {
        "train_loss": basin.base_loss, "trace": trace.estimate, "trace_se": trace.stderr, "basin_width": basin.mean,
        "basin_width_std": basin.std, "basin_censored": float(basin.censored.float().mean()), "basin_rise": basin.rise,
        "eps_sharpness": sharp, "lanczos_iterations": eigen.iterations, "lanczos_converged": float(eigen.converged),
    }


def _arrays(args, model: nn.Module, subspace: ParameterSubspace | None, batches, group: h5py.Group, row: int) -> None:
    """The optional arrays of one row (SLQ density, loss surface), straight into ``group``."""
    loss_fn = resolve_loss(args.loss)
    if args.density:
        operator = HessianOperator(model, loss_fn, batches, subspace=subspace)
        density = slq(operator, max_iter=min(80, operator.size), seed=args.seed)
        _write_arrays(group, f"density_{row}", grid=density.grid.numpy(), density=density.density.numpy())
    if args.surface != "none":
        surface = loss_surface(model, loss_fn, batches, dims=1 if args.surface == "1d" else 2, grid_points=args.surface_points,
                               span=args.basin_max, subspace=subspace, seed=args.seed)
        _write_arrays(group, f"surface_{row}", axis=surface.axes[0].numpy(), loss=surface.loss.numpy(), accuracy=surface.accuracy.numpy())


def _probe(args, model: nn.Module, meta: dict, path: Path, subspace: ParameterSubspace | None, batches, group: h5py.Group,
           row: int) -> dict:
    """Every probe of one checkpoint, in the coordinates ``--coordinates`` asks for (see the module docstring)."""
    start = time.perf_counter()
    space = model_space(model)
    own_wanted = args.coordinates != "efcn" or space in _DENSE_SPACES
    efcn_wanted = args.coordinates != "own" or space in _DENSE_SPACES
    nothing = (np.full(args.k, np.nan), dict.fromkeys(MEASURES, math.nan))
    own = _measure(args, model, subspace, batches) if own_wanted else nothing
    if own_wanted:
        _arrays(args, model, subspace, batches, group, row)
    if space in _DENSE_SPACES:
        efcn = own  # already in the eFCN's coordinates
    elif efcn_wanted:
        # A checkpoint without a recorded shape (a torchvision factory) is embedded for the data's inputs.
        embedded = to_efcn(model, tuple(model.input_shape or next(iter(batches))[0].shape[1:]))
        embedded_subspace = _subspace(embedded, args.subspace, path)
        efcn = _measure(args, embedded, embedded_subspace, batches)
        if not own_wanted:
            _arrays(args, embedded, embedded_subspace, batches, group, row)
        del embedded  # one model at a time on the device
    else:
        efcn = nothing
    return {
        "top_eigs": own[0], "top_eigs" + EFCN_SUFFIX: efcn[0],
        "row": row, "epoch": float(meta.get("epoch", math.nan)), "t_w": float(meta.get("t_w", math.nan)),
        "final": float(path.stem == "final"), **own[1], **{m + EFCN_SUFFIX: v for m, v in efcn[1].items()},
        "seconds": time.perf_counter() - start,
    }


def _write_arrays(group: h5py.Group, name: str, **arrays: np.ndarray) -> None:
    if name in group:  # a row killed half-way through its arrays is recomputed whole
        del group[name]
    sub = group.create_group(name)
    for key, value in arrays.items():
        write_array(sub, key, value)


def _copy_row(group: h5py.Group, earlier: int, row: int, checkpoint: _Checkpoint, meta: dict) -> dict:
    """The row of a checkpoint whose weights were probed at row ``earlier`` (of this run's group)."""
    values = {column: float(group["curve"][column][earlier]) for column in COLUMNS}
    values |= {"row": row, "epoch": float(meta.get("epoch", math.nan)), "t_w": float(meta.get("t_w", math.nan)),
               "final": float(checkpoint.path.stem == "final"), "seconds": 0.0}
    for kind in ("density", "surface"):
        if f"{kind}_{earlier}" in group:
            _write_arrays(group, f"{kind}_{row}", **{k: v[()] for k, v in group[f"{kind}_{earlier}"].items()})
    return {name: group[name][earlier] for name in EIGS} | values


EIGS = ("top_eigs", "top_eigs" + EFCN_SUFFIX)  # the (rows, k) datasets of a run's group


def _eigs_dataset(group: h5py.Group, name: str, k: int, length: int) -> h5py.Dataset:
    if name not in group:
        write_array(group, name, np.zeros((0, k)), maxshape=(None, k))
    eigs = group[name]
    if eigs.shape[1] != k:
        raise fail(f"{group.name} holds top-{eigs.shape[1]} eigenvalues, not --k {k}; use the same --k or --overwrite")
    eigs.resize((length, k))  # rows beyond the curve were not finished
    return eigs


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with launched(args):  # under torchrun: data-parallel probes, rank 0 writes --out
        try:
            return _main(args, argv)
        except ResultError as err:  # raised by the open result itself: a full disk while writing
            raise fail(str(err)) from None


def _probe_checkpoint(args, checkpoint: _Checkpoint, device, batches, group: h5py.Group, row: int, earlier: int) -> dict:
    """Load one checkpoint onto the device, probe it (or copy the row of its earlier twin), and let it go."""
    model, meta = _load(checkpoint.path, device, args)
    # Readers pair runs by seed and protocol run (attributes, never names); relax records both in every checkpoint.
    write_attrs(group, {"space": model_space(model), **{key: meta[key] for key in ("seed", "protocol_run", "t_w") if key in meta}})
    if earlier < row:
        return _copy_row(group, earlier, row, checkpoint, meta)
    try:
        return _probe(args, model, meta, checkpoint.path, _subspace(model, args.subspace, checkpoint.path), batches, group, row)
    except NonFiniteError as err:  # the rows probed before stay; --resume continues after the cause is removed
        raise fail(f"{checkpoint.path}: {err}") from None


# Options that change how the command runs, not what it computes.
_EXECUTION_ONLY = ("quiet", "device", "resume", "overwrite", "plot", "out")


def _main(args: argparse.Namespace, argv: list[str] | None) -> int:
    device = resolve_device(args.device)
    reset_peak_memory(device)
    runs, data = _prepare(args)
    index = run_index(args.run_dir, runs) if args.run_dir else {}
    data = on_device(data, device)  # once, not at every probe of every checkpoint
    batches = data.batches("train", args.batch_size)
    # The sources identify the checkpoints (the folder may move; torchrun's other ranks write a scratch copy).
    config = {key: value for key, value in sorted(vars(args).items()) if key not in _EXECUTION_ONLY + ("run_dir", "ckpt", "name")}
    config["sources"] = {run: [c.source for c in entries] for run, entries in runs.items()}
    try:
        result = open_result(args.out, "sharpness", tool="runners.sharpness", config=config, resume=args.resume,
                             overwrite=args.overwrite, seed=args.seed,
                             argv=sys.argv if argv is None else ["runners.sharpness", *argv])
    except ResultError as err:
        raise fail(str(err)) from None
    bar = Progress(sum(len(entries) for entries in runs.values()), desc="sharpness", enabled=not progress_disabled(args.quiet))
    with result:
        for run, entries in runs.items():
            group = result.group.require_group(run)
            write_attrs(group, {"checkpoints": json.dumps([result.relative(c.path) for c in entries]), "subspace": args.subspace,
                                "coordinates": args.coordinates})
            curve = CurveWriter(group, "curve", columns=COLUMNS, index="row")
            eigs = {name: _eigs_dataset(group, name, args.k, len(curve)) for name in EIGS}
            bar.update(len(curve))
            first_row_of = {}
            for row, checkpoint in enumerate(entries):
                first_row_of.setdefault(checkpoint.digest, row)
                if row < len(curve):
                    continue
                bar.set_postfix_str(f"{run}/{checkpoint.path.name}")
                values = _probe_checkpoint(args, checkpoint, device, batches, group, row, first_row_of[checkpoint.digest])
                values["seed"] = _row_seed(group, index.get(run))
                for name, dataset in eigs.items():
                    dataset.resize((row + 1, args.k))
                    dataset[row] = values.pop(name)
                curve.append(**values)
                bar.update(1)
        result.write_attrs({"peak_memory_bytes": peak_memory_bytes(device)})
    bar.close()
    _print_table(args.out)
    if args.plot:
        from runners._figures import plot_sharpness

        for path in plot_sharpness(args.out, Path(args.run_dir) / "results.h5" if args.run_dir else None):
            print(f"figure: {path}")
    return 0


def _row_seed(group: h5py.Group, described: tuple[str, int | None] | None) -> float:
    """The seed of a run's rows: its checkpoint's (already on the group), else the run directory's; NaN when unknown."""
    if "seed" not in group.attrs and described is not None and described[1] is not None:
        write_attrs(group, {"protocol_run": described[0], "seed": described[1]})
    return float(group.attrs.get("seed", math.nan))


def _print_table(path: str) -> None:
    with h5py.File(path, "r") as store:
        print(f"{'run':<16} {'epoch':>6} {'top eig':>10} {'(eFCN)':>10} {'trace':>10} {'(eFCN)':>10} {'basin width':>12} "
              f"{'train loss':>10}")
        for run, group in store["sharpness"].items():
            curve = group["curve"]
            for i in range(curve["row"].shape[0]):
                # a width whose search hit --basin-max on some ray is only a lower bound
                width = ("≥" if curve["basin_censored"][i] > 0 else "") + f"{curve['basin_width'][i]:.4g}"
                print(f"{run:<16} {curve['epoch'][i]:>6g} {group['top_eigs'][i, 0]:>10.4g} {group['top_eigs_efcn'][i, 0]:>10.4g} "
                      f"{curve['trace'][i]:>10.4g} {curve['trace_efcn'][i]:>10.4g} {width:>12} {curve['train_loss'][i]:>10.4g}")


if __name__ == "__main__":
    raise SystemExit(main())
