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
import json
import math
import sys
from pathlib import Path

import h5py
import torch
from torch import nn

from embeddings import model_space
from landscape import NonFiniteError, Progress, check_finite_model
from results import CheckpointError, CurveWriter, ResultError, check_result_name, load_checkpoint, open_result, write_attrs
from runners._engine import (
    SHARPNESS_COLUMNS,
    SHARPNESS_EIGS,
    SharpnessCheckpoint,
    check_model,
    copy_row,
    discover_checkpoints,
    eigs_dataset,
    launched,
    load_data,
    on_device,
    peak_memory_bytes,
    probe_model,
    probe_subspace,
    reset_peak_memory,
    resolve_loss,
    run_index,
    weights_digest,
)
from runners.cli import (
    add_common_arguments, add_loss_argument, add_model_arguments, add_seeds_argument, fail, model_from_args, progress_disabled,
    resolve_device,
)

SUBSPACES = ("full", "cnn", "local", "offlocal")
COORDINATES = ("own", "efcn", "both")


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
    runs: dict[str, list[SharpnessCheckpoint]] = {}
    data = None
    for run, paths in discover_checkpoints(args).items():
        runs[run] = []
        for path in paths:
            model, _ = _load(path, "cpu", args)
            if model.input_shape is None and args.data == "fake":  # a factory that takes none (torchvision's), no --input-shape
                raise fail(f"--data fake needs the input shape, which {path} (model {model.arch}) does not record; "
                           "pass --input-shape, e.g. 3,32,32")
            probe_subspace(model, args.subspace, path)
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
            runs[run].append(SharpnessCheckpoint(path, source, weights_digest(model)))
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with launched(args):  # under torchrun: data-parallel probes, rank 0 writes --out
        try:
            return _main(args, argv)
        except ResultError as err:  # raised by the open result itself: a full disk while writing
            raise fail(str(err)) from None


def _probe_checkpoint(args, checkpoint: SharpnessCheckpoint, device, batches, group: h5py.Group, row: int, earlier: int) -> dict:
    """Load one checkpoint onto the device, probe it (or copy the row of its earlier twin), and let it go."""
    model, meta = _load(checkpoint.path, device, args)
    # Readers pair runs by seed and protocol run (attributes, never names); relax records both in every checkpoint.
    write_attrs(group, {"space": model_space(model), **{key: meta[key] for key in ("seed", "protocol_run", "t_w") if key in meta}})
    if earlier < row:
        return copy_row(group, earlier, row, checkpoint, meta)
    try:
        return probe_model(args, model, meta, checkpoint.path, probe_subspace(model, args.subspace, checkpoint.path), batches, group,
                           row)
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
            curve = CurveWriter(group, "curve", columns=SHARPNESS_COLUMNS, index="row")
            eigs = {name: eigs_dataset(group, name, args.k, len(curve)) for name in SHARPNESS_EIGS}
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
