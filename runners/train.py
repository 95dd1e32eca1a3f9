"""Train one model (CNN, eLCN, eFCN or FCN) and save its history and checkpoints.

    python -m runners.train --space cnn --epochs 60 --save-at 0,4,16 --out runs/cnn
    python -m runners.train --space efcn --init runs/cnn/checkpoints/cnn/epoch_4.pt --out runs/efcn4

The model starts from a fresh initialisation of ``--model`` (``--space elcn/efcn``: the CNN's init
embedded; ``fcn``: the eFCN architecture with a standard random init) or from the checkpoint
``--init``, embedded into ``--space``. Outputs in ``--out``: ``results.h5`` (the run's group
``/runs/<name>``, a result of its own: other ``--name`` runs may share the file; schema in
results/README.md), ``checkpoints/<name>/epoch_<k>.pt`` for every ``--save-at`` epoch and
``checkpoints/<name>/final.pt``. An eFCN or eLCN whose ``--init`` is ``<--out>/checkpoints/<cnn>/epoch_<k>.pt``
of a CNN trained in the same ``--out`` is a relaxation switched at t_w = k, like ``runners.relax``'s
runs: it records ``parent``, ``parent_epoch`` and ``t_w`` and ``runners.figures`` pairs it with its CNN.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

import h5py

from embeddings import MemoryBudgetError
from results import CheckpointError, read_attrs
from runners._engine import (
    RunSpec,
    add_training_arguments,
    context_from_args,
    int_list,
    open_experiment,
    preflight,
    run_all,
    snapshot_of,
)
from runners.cli import add_common_arguments, fail


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runners.train", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    add_training_arguments(parser, out="runs/train", epochs=60)
    parser.add_argument("--space", choices=("cnn", "elcn", "efcn", "fcn"), default="cnn", help="space the model trains in (default: cnn)")
    parser.add_argument("--init", default=None, help="checkpoint to start from (embedded into --space); default: a fresh init")
    parser.add_argument("--save-at", type=int_list, default=(), help="epochs at which to save checkpoints, e.g. 0,4,16 (default: none; final.pt is always saved)")
    parser.add_argument("--name", default=None,
                        help="run name in the HDF5 file and checkpoint folder (default: --space); "
                             "several names share one --out without flags")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    return parser


def switched_from(args: argparse.Namespace, runs: h5py.Group) -> dict[str, Any]:
    """``parent`` and ``parent_epoch`` of an eFCN/eLCN whose ``--init`` is a snapshot of a done CNN run of this ``--out``, else ``{}``.

    Such a run is a relaxation switched at t_w = the snapshot's epoch, as ``runners.relax`` makes them:
    recording t_w is what lets ``runners.figures`` pair it with its CNN (Fig. 3, Fig. 4, the poster).
    Only a done CNN counts: the figures leave out unfinished runs, and the pool waits for a parent to end.
    """
    found = snapshot_of(args.out, args.init) if args.init and args.space in ("efcn", "elcn") else None
    parent = runs.get(found[0]) if found else None
    if parent is None or parent.attrs.get("space") != "cnn" or parent.attrs.get("status") != "done":
        return {}
    return {"parent": found[0], "parent_epoch": found[1]}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    name = args.name or args.space
    beyond = [e for e in args.save_at if not 0 <= e <= args.epochs]
    if beyond:
        raise fail(f"--save-at {','.join(map(str, beyond))} lies beyond --epochs {args.epochs}; use epochs in 0..{args.epochs}")
    if args.init and args.space == "fcn":
        raise fail("--space fcn is a fresh random FCN; it cannot start from --init (use --space efcn to embed a checkpoint)")
    context = context_from_args(args)
    preflight(context, args.init, embeds={"fcn": "efcn", "cnn": None}.get(args.space, args.space))
    path = os.path.join(args.out, "results.h5")
    # Stored relative to the result file's folder (--out), like every path in the file.
    init = {"init": os.path.relpath(os.path.abspath(args.init), os.path.abspath(args.out))} if args.init else {}
    with open_experiment(args, tool="runners.train", path=path, name=f"runs/{name}", runs=[name], argv=argv) as result:
        parent = switched_from(args, result.group.parent)
        t_w = {"t_w": parent["parent_epoch"]} if parent else {}
        spec = RunSpec(name, args.space, args.epochs, init=args.init or "", snapshots=args.save_at, attrs={**init, **t_w}, **parent)
        try:
            run_all([spec], context, result.group.parent)
        except (ValueError, FileNotFoundError, CheckpointError, MemoryBudgetError) as err:
            raise fail(str(err).splitlines()[0]) from None
        attrs = read_attrs(result.group)
    if attrs.get("status") == "diverged":
        raise fail(f"{name} diverged: its training loss became non-finite in epoch {attrs['diverged_epoch']} (lr {args.lr:g}, "
                   f"{args.optimizer}); no accuracy is reported; lower --lr (history up to epoch {attrs['last_finite_epoch']} in {path})")
    delta = "" if math.isnan(attrs["final_delta"]) else f", delta {attrs['final_delta']:.3f}"
    print(f"{name} ({args.space}): test accuracy {attrs['final_test_acc']:.4f}, train loss {attrs['final_train_loss']:.4g}"
          f"{delta}; {attrs['seconds']:.1f} s; results in {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
