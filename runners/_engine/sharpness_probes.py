"""What ``runners.sharpness`` measures at one checkpoint, and how a row reaches its run's HDF5 group.

:func:`probe_model` computes the top-k Hessian eigenvalues and the :data:`MEASURES` of one model in the
coordinates ``--coordinates`` asks for (its own, the eFCN's, or both; ``runners.sharpness``' docstring
says what each means), writing the optional SLQ density and loss surface into the run's group.
:func:`copy_row` gives a checkpoint holding the weights of an earlier row that row's numbers, and
:func:`eigs_dataset` keeps the ``(rows, k)`` eigenvalue datasets in step with the curve on ``--resume``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import h5py
import numpy as np
from torch import nn

from embeddings import MemoryBudgetError, embed_parameters, local_masks, model_space, to_cnn, to_efcn
from landscape import (
    HessianOperator,
    ParameterSubspace,
    basin_width,
    epsilon_sharpness,
    hutch_plus_plus,
    hutchinson,
    lanczos,
    loss_surface,
    parameter_subspace,
    slq,
)
from results import write_array
from runners._engine.losses import resolve_loss
from runners._engine.sharpness_runs import SharpnessCheckpoint
from runners.cli import fail

__all__ = ["MEASURES", "EFCN_SUFFIX", "COLUMNS", "EIGS", "probe_subspace", "probe_model", "copy_row", "eigs_dataset"]

MEASURES = (
    "train_loss", "trace", "trace_se", "basin_width", "basin_width_std", "basin_censored", "basin_rise", "eps_sharpness",
    "lanczos_iterations", "lanczos_converged",
)
EFCN_SUFFIX = "_efcn"  # the columns (and top_eigs dataset) measured in the eFCN's coordinates
COLUMNS = ("row", "epoch", "t_w", "final", "seed", *MEASURES, *(m + EFCN_SUFFIX for m in MEASURES), "seconds")
EIGS = ("top_eigs", "top_eigs" + EFCN_SUFFIX)  # the (rows, k) datasets of a run's group
_DENSE_SPACES = ("efcn", "fcn")  # checkpoints whose own coordinates are the eFCN's


def probe_subspace(model: nn.Module, choice: str, path: Path) -> ParameterSubspace | None:
    """The probed directions (``--subspace choice``) of the checkpoint ``path`` (None: all parameters)."""
    if choice == "full" or model_space(model) == "cnn":
        return None
    if choice == "cnn":
        cnn = to_cnn(model)
        return parameter_subspace(model, linear_map=lambda c: embed_parameters(model, c), coordinates=dict(cnn.named_parameters()))
    masks = local_masks(model)
    if not masks:
        raise fail(f"--subspace {choice} needs dense embedded layers (an eFCN or FCN); {path} holds a {model_space(model)}")
    return parameter_subspace(model, masks=masks if choice == "local" else {name: ~mask for name, mask in masks.items()})


def _measure(args: argparse.Namespace, model: nn.Module, subspace: ParameterSubspace | None,
             batches) -> tuple[np.ndarray, dict[str, float]]:
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


def _arrays(args: argparse.Namespace, model: nn.Module, subspace: ParameterSubspace | None, batches, group: h5py.Group, row: int) -> None:
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


def probe_model(args: argparse.Namespace, model: nn.Module, meta: dict, path: Path, subspace: ParameterSubspace | None, batches,
                group: h5py.Group, row: int) -> dict:
    """Every probe of the checkpoint ``path`` (loaded as ``model``, with ``meta``): one row, in the coordinates
    ``--coordinates`` asks for (see ``runners.sharpness``' docstring); its arrays go into ``group``."""
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
        embedded_subspace = probe_subspace(embedded, args.subspace, path)
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
    """The arrays of one row as the sub-group ``name`` of ``group`` (replaced when present)."""
    if name in group:  # a row killed half-way through its arrays is recomputed whole
        del group[name]
    sub = group.create_group(name)
    for key, value in arrays.items():
        write_array(sub, key, value)


def copy_row(group: h5py.Group, earlier: int, row: int, checkpoint: SharpnessCheckpoint, meta: dict) -> dict:
    """The row of a checkpoint whose weights were probed at row ``earlier`` (of this run's group)."""
    values = {column: float(group["curve"][column][earlier]) for column in COLUMNS}
    values |= {"row": row, "epoch": float(meta.get("epoch", math.nan)), "t_w": float(meta.get("t_w", math.nan)),
               "final": float(checkpoint.path.stem == "final"), "seconds": 0.0}
    for kind in ("density", "surface"):
        if f"{kind}_{earlier}" in group:
            _write_arrays(group, f"{kind}_{row}", **{k: v[()] for k, v in group[f"{kind}_{earlier}"].items()})
    return {name: group[name][earlier] for name in EIGS} | values


def eigs_dataset(group: h5py.Group, name: str, k: int, length: int) -> h5py.Dataset:
    """The ``(rows, k)`` dataset ``name`` of ``group``, cut to the ``length`` rows its curve holds."""
    if name not in group:
        write_array(group, name, np.zeros((0, k)), maxshape=(None, k))
    eigs = group[name]
    if eigs.shape[1] != k:
        raise fail(f"{group.name} holds top-{eigs.shape[1]} eigenvalues, not --k {k}; use the same --k or --overwrite")
    eigs.resize((length, k))  # rows beyond the curve were not finished
    return eigs
